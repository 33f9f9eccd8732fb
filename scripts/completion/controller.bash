# shellcheck shell=bash
# Bash completion for the ztr `controller` CLI: commands, subcommands, each
# command's options, and the values some options take. `make install` puts
# it in $(PREFIX)/share/bash-completion/completions/controller, where
# bash-completion loads it on first use; or: source controller.bash.
# The table follows `controller help` (tests/e2e/completion.sh checks that
# every command and option there completes).

# "group verb" (or "group" for one-word commands) -> its options.
declare -gA _ztr_controller_options=(
  ["token create"]="--role --name --uses --ttl --prefix --replace --address --env --json"
  ["token list"]="--json"
  ["token delete"]=""
  ["node list"]="--json"
  ["node revoke"]="--reason"
  ["node drain"]="--deadline"
  ["node undrain"]=""
  ["node set-addresses"]="--address"
  ["fleet"]="--missed-renewal --expiring-within --expired --flapping --state --json"
  ["controllers"]="--json"
  ["changes"]="--limit --json"
  ["resource add"]="--description --connector"
  ["resource bind"]="--connector"
  ["resource unbind"]="--connector"
  ["resource list"]="--json"
  ["resource delete"]=""
  ["allow"]="--tunneler --resource"
  ["deny"]="--tunneler --resource"
  ["allowlist"]="--json"
  ["explain"]="--tunneler --resource --connector --json"
  ["ca rotate"]=""
  ["ca show"]="--pem --json"
  ["events"]="--after --limit --node --kind --source --since --until --newest --json"
  ["federation propose"]="--name --url --ttl"
  ["federation token"]="--peer --ttl"
  ["federation accept"]="--url --token-file --name"
  ["federation list"]="--json"
  ["federation suspend"]="--reason"
  ["federation resume"]=""
  ["federation revoke"]=""
  ["federation grant"]="--peer --resource --tunneler --source-cidr --expires"
  ["federation grants"]="--peer --json"
  ["federation revoke-grant"]=""
  ["store migrate"]="--from --to"
)

_ztr_controller() {
  local cur="${COMP_WORDS[COMP_CWORD]}" prev="" key command i
  ((COMP_CWORD > 0)) && prev="${COMP_WORDS[COMP_CWORD - 1]}"
  COMPREPLY=()
  # Values first: what the option before the cursor takes.
  case "$prev" in
    --role) mapfile -t COMPREPLY < <(compgen -W "connector tunneler" -- "$cur"); return ;;
    --state) mapfile -t COMPREPLY < <(compgen -W "ONLINE OFFLINE EXPIRED REVOKED" -- "$cur"); return ;;
    --kind) mapfile -t COMPREPLY < <(compgen -W "enrolled status renewed reauthenticated revoked denied draining undrained admin security alert" -- "$cur"); return ;;
    --ca | --token-file | --config) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
  esac
  # The command so far: the words before the cursor that are not options.
  local words=()
  for ((i = 1; i < COMP_CWORD && ${#words[@]} < 2; i++)); do
    case "${COMP_WORDS[i]}" in
      --ca | --config) i=$((i + 1)) ;;   # and the file after it
      -*) ;;
      *) words+=("${COMP_WORDS[i]}") ;;
    esac
  done
  local groups="" k
  for k in "${!_ztr_controller_options[@]}"; do groups+=" ${k%% *}"; done
  if [ "${#words[@]}" -eq 0 ]; then
    if [[ "$cur" == -* ]]; then
      # The daemon's own: `controller [serve] --config FILE [flags]`.
      mapfile -t COMPREPLY < <(compgen -W "--config --help --version" -- "$cur")
    else
      mapfile -t COMPREPLY < <(compgen -W "serve help $(tr ' ' '\n' <<<"$groups" | sort -u)" -- "$cur")
    fi
    return
  fi
  command="${words[0]}"
  if [ "$command" = serve ]; then
    mapfile -t COMPREPLY < <(compgen -W "--config --help --version" -- "$cur")
    return
  fi
  if [ -n "${_ztr_controller_options[$command]+x}" ]; then
    key="$command"                      # a one-word command: fleet, allow, ...
  elif [ "${#words[@]}" -ge 2 ] && [ -n "${_ztr_controller_options[$command ${words[1]}]+x}" ]; then
    key="$command ${words[1]}"
  else
    # The group is there, the subcommand is being typed.
    local verbs=""
    for k in "${!_ztr_controller_options[@]}"; do
      [[ "$k" == "$command "* ]] && verbs+=" ${k#* }"
    done
    mapfile -t COMPREPLY < <(compgen -W "$verbs" -- "$cur")
    return
  fi
  if [[ "$cur" == -* ]] || [ -z "$cur" ]; then
    mapfile -t COMPREPLY < <(compgen -W "${_ztr_controller_options[$key]} --ca --help" -- "$cur")
  fi
}

complete -F _ztr_controller controller
