// Numbers and times as people read them.

export function bytes(value: number | undefined): string {
  if (value === undefined || value === null) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${size >= 10 || unit === 0 ? size.toFixed(0) : size.toFixed(1)} ${units[unit]}`;
}

export function cores(millis: number | undefined): string {
  if (millis === undefined || millis === null) return "-";
  return (millis / 1000).toFixed(millis % 1000 === 0 ? 0 : 2);
}

/// `5m`, `3h`, `2d` since an RFC 3339 time or microseconds.
export function age(since: string | number | undefined): string {
  if (since === undefined || since === null || since === "") return "-";
  const millis = typeof since === "number" ? since / 1000 : Date.parse(since);
  if (Number.isNaN(millis)) return "-";
  const seconds = Math.max(0, Math.floor((Date.now() - millis) / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

export function time(micros: number | undefined): string {
  if (!micros) return "-";
  return new Date(micros / 1000).toLocaleString();
}
