// One key=value line per event on stderr, the format of the daemons' logs
// (base/log.c), so the same greps and collectors read the console's log.
export type Level = "debug" | "info" | "warn" | "error";

function quote(value: string): string {
  if (value !== "" && /^[A-Za-z0-9._:/@+,-]+$/.test(value)) return value;
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;
}

export function logLine(level: Level, msg: string, fields: Record<string, string | number> = {}): string {
  let line = `ts=${new Date().toISOString()} level=${level} msg=${quote(msg)}`;
  for (const [key, value] of Object.entries(fields)) line += ` ${key}=${quote(String(value))}`;
  return line;
}

export function log(level: Level, msg: string, fields: Record<string, string | number> = {}): void {
  process.stderr.write(logLine(level, msg, fields) + "\n");
}
