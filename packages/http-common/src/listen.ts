/** Parses a Go-style listen address: `:8000`, `0.0.0.0:8000`, `[::1]:8000`, `localhost:8000` or `8000`. */
export function parseListen(address: string): { host: string; port: number } {
  const match = /^(?:(?:\[([^\]]+)\]|([^:[\]]*)):)?(\d{1,5})$/.exec(address.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new Error(`invalid listen address "${address}": expected [host]:port, e.g. ":8000"`);
  }
  const host = match[1] ?? match[2];
  return { host: host ? host : '0.0.0.0', port };
}
