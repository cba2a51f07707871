import { InvalidArgumentError } from 'commander';

/**
 * `--api` takes the same spellings everywhere: `HOST:PORT` (`127.0.0.1:7070`, `localhost:7070`,
 * `[::1]:7070`) or an `http://` / `https://` URL. Before, clients wanted a URL and `start` wanted
 * HOST:PORT, and giving one where the other was expected failed with `Invalid URL`.
 */
const EXPECTED = 'expected HOST:PORT (e.g. 127.0.0.1:7070) or an http:// URL';

function hostPort(v: string): { host: string; port: number } | undefined {
  const i = v.lastIndexOf(':');
  if (i <= 0) return undefined;
  const host = v.slice(0, i).replace(/^\[|\]$/g, '');
  const portText = v.slice(i + 1);
  const port = Number(portText);
  if (!host || host.includes('/') || !/^[0-9]{1,5}$/.test(portText) || port > 65535) return undefined;
  // A bare IPv6 address without brackets (`::1:7070`) is ambiguous: ask for brackets.
  if (host.includes(':') && !v.startsWith('[')) return undefined;
  return { host, port };
}

/** Parses a URL spelling; undefined when `v` does not start with a scheme. */
function asUrl(v: string): URL | undefined {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) return undefined;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw new InvalidArgumentError(`${EXPECTED}; "${v}" is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidArgumentError(`${EXPECTED}; ${url.protocol} is not http: or https:`);
  }
  return url;
}

/** For clients: the API's base URL (no path), from either spelling. */
export function parseApiUrl(value: string): URL {
  const v = value.trim();
  const url = asUrl(v);
  if (url !== undefined) return new URL(url.origin);
  const hp = hostPort(v);
  if (hp === undefined) throw new InvalidArgumentError(EXPECTED);
  return new URL(`http://${hp.host.includes(':') ? `[${hp.host}]` : hp.host}:${hp.port}`);
}

/** For `mesh start` / `join`: the host and port to listen on, from either spelling. */
export function parseListenAddress(value: string): { host: string; port: number } {
  const v = value.trim();
  const url = asUrl(v);
  if (url !== undefined) {
    if (url.protocol !== 'http:') throw new InvalidArgumentError(`${EXPECTED}; the node serves plain http`);
    const port = url.port === '' ? 80 : Number(url.port);
    return { host: url.hostname.replace(/^\[|\]$/g, ''), port };
  }
  const hp = hostPort(v);
  if (hp === undefined) throw new InvalidArgumentError(EXPECTED);
  return hp;
}
