/**
 * Secret references and redaction. Config never holds a secret value: it holds
 * a reference (`{ env: NAME }` or `{ file: PATH }`, the form a mounted
 * Kubernetes Secret takes), resolved in the worker when an activity needs it.
 * Every resolved value is remembered so that `redact` can scrub it, and any
 * URL password, from text on its way to logs, errors or workflow history.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from './errors.ts';

export type SecretRef = { env: string } | { file: string };

const knownSecrets = new Set<string>();

/** Reads a reference's value; does not mark it secret (see `resolveSecret`). */
export function readRef(ref: SecretRef, where: string): string {
  if ('env' in ref) {
    const value = process.env[ref.env];
    if (value === undefined || value === '') {
      throw new ConfigError(`${where}: environment variable ${ref.env} is not set`);
    }
    return value;
  }
  try {
    return readFileSync(ref.file, 'utf8').trim();
  } catch (err) {
    throw new ConfigError(`${where}: cannot read secret file ${ref.file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** Reads a secret and remembers it, so `redact` scrubs it from any text. */
export function resolveSecret(ref: SecretRef, where: string): string {
  const value = readRef(ref, where);
  rememberSecret(value);
  return value;
}

export function rememberSecret(value: string): void {
  if (value.length >= 4) knownSecrets.add(value);
  // A connection URL's password on its own, in case a peer echoes it.
  try {
    const password = decodeURIComponent(new URL(value).password);
    if (password.length >= 4) knownSecrets.add(password);
  } catch {
    // not a URL
  }
}

const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*):([^@/\s]+)@/gi;

/** Scrubs known secret values and URL passwords from text. */
export function redact(text: string): string {
  let out = text.replace(URL_CREDENTIALS, '$1:***@');
  for (const secret of knownSecrets) {
    if (out.includes(secret)) out = out.split(secret).join('***');
  }
  return out;
}
