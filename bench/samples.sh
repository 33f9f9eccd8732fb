# shellcheck shell=bash
# What bench/churn.sh and bench/soak.sh read of a process and how they plot
# it. Source it.

# rss PID / fds PID / cpu PID: resident KiB, open descriptors, CPU seconds
# (user + system); 0 or empty once the process is gone.
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
cpu() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($12 + $13) / t}'; }

# growth_verdict KIB: the targets' "RSS growth <= 1 MiB".
growth_verdict() { [ "$1" -le 1024 ] && echo "met" || echo "NOT met"; }

# plot_memory PNG CSV TITLE XLABEL XCOL RSS_A RSS_B FDS_A FDS_B: the
# connector's (A) and tunneler's (B) RSS on the left axis and descriptors on
# the right, from the CSV's columns; gnuplot is installed when missing (as
# root), else no plot and a line on stderr.
plot_memory() {
  local png="$1" csv="$2" title="$3" xlabel="$4" x="$5" ra="$6" rb="$7" fa="$8" fb="$9"
  if ! command -v gnuplot >/dev/null && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gnuplot-nox >/dev/null 2>&1 || true
  fi
  if ! command -v gnuplot >/dev/null; then
    echo "no gnuplot, no plot (apt-get install gnuplot-nox)" >&2
    return 0
  fi
  gnuplot <<GP
set terminal pngcairo size 900,500 noenhanced
set output "$png"
set datafile separator ","
set key bottom right
set xlabel "$xlabel"
set ylabel "resident memory (KiB)"
set y2label "open descriptors"
set y2tics
set ytics nomirror
set yrange [0:*]
set y2range [0:*]
set format x "%.1s%c"
set title "$title"
plot "$csv" using $x:$ra with lines title "connector RSS", "$csv" using $x:$rb with lines title "tunneler RSS", \
     "$csv" using $x:$fa axes x1y2 with lines dashtype 2 title "connector fds", "$csv" using $x:$fb axes x1y2 with lines dashtype 2 title "tunneler fds"
GP
}
