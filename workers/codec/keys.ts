/**
 * The payload codec's keys. A key ring holds every key that may still be needed to read old
 * payloads, and names the one new payloads are encrypted with, so keys rotate without making
 * earlier runs unreadable. Key bytes live in Node KeyObjects (which print no key material) behind
 * a private field, so logging a ring or the config that holds it shows ids only.
 */
import { createSecretKey, type KeyObject } from 'node:crypto';

/** AES-256: 32 bytes. */
export const KEY_BYTES = 32;
export const KEY_ID_RULE = '1 to 64 letters, digits, dots, dashes or underscores';
export const KEY_RULE = `${KEY_BYTES} bytes in base64 (make one with: openssl rand -base64 ${KEY_BYTES})`;
const KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const BASE64_PATTERN = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export class CodecKeyRing {
  readonly #keys: ReadonlyMap<string, KeyObject>;

  /** `keys`: key id -> 32 key bytes in base64; `currentKeyId` must be one of them. */
  constructor(
    readonly currentKeyId: string,
    keys: Record<string, string>,
  ) {
    const entries = Object.entries(keys);
    if (entries.length === 0) throw new Error('has no keys');
    const ring = new Map<string, KeyObject>();
    for (const [id, base64] of entries) {
      if (!isKeyId(id)) throw new Error(`has key id ${JSON.stringify(id)}; expected ${KEY_ID_RULE}`);
      ring.set(id, decodeKey(id, base64));
    }
    if (!ring.has(currentKeyId)) {
      throw new Error(
        `names current key ${JSON.stringify(currentKeyId)}, which is not among its keys (${[...ring.keys()].join(', ')})`,
      );
    }
    this.#keys = ring;
  }

  /** Every key id, the current one included. */
  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  key(id: string): KeyObject | undefined {
    return this.#keys.get(id);
  }
}

export function isKeyId(id: string): boolean {
  return KEY_ID_PATTERN.test(id);
}

/** The key file: `{ "current": "k2", "keys": { "k1": "<base64 of 32 bytes>", "k2": "..." } }`. */
export function parseKeyFile(text: string): CodecKeyRing {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JSON.parse's own message quotes the text around the error, which may be key material.
    throw new Error(
      'is not valid JSON; expected { "current": "<key id>", "keys": { "<key id>": "<base64>" } }',
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error('is not a JSON object; expected { "current": "<key id>", "keys": { ... } }');
  }
  const { current, keys } = parsed as { current?: unknown; keys?: unknown };
  if (typeof current !== 'string') throw new Error('has no "current" key id (a string)');
  if (typeof keys !== 'object' || keys === null || Array.isArray(keys)) {
    throw new Error('has no "keys" object (key id -> base64 key)');
  }
  const texts: Record<string, string> = {};
  for (const [id, value] of Object.entries(keys)) {
    if (typeof value !== 'string')
      throw new Error(`has key ${JSON.stringify(id)} that is not a base64 string`);
    texts[id] = value;
  }
  return new CodecKeyRing(current, texts);
}

function decodeKey(id: string, base64: string): KeyObject {
  const bytes = BASE64_PATTERN.test(base64) ? Buffer.from(base64, 'base64') : undefined;
  if (bytes?.length !== KEY_BYTES) {
    // Never echo the value: it is (or is meant to be) a key.
    throw new Error(`has key ${JSON.stringify(id)} that is not ${KEY_RULE}`);
  }
  return createSecretKey(bytes);
}
