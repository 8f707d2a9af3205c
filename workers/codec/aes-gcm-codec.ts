/**
 * Payload encryption: every payload the client or worker sends to Temporal (workflow and activity
 * inputs, results, heartbeat details, memo, encoded failure details) is replaced by an AES-256-GCM
 * ciphertext of the whole original payload (its metadata included, so the encoding is hidden too).
 * The Temporal server and anyone reading its database or history see only ciphertext and the id of
 * the key that can open it.
 *
 * Encrypted payload: metadata `encoding: binary/encrypted`, `encryption-key-id: <id>`;
 * data = 12-byte random nonce || ciphertext || 16-byte GCM tag.
 */
import { createCipheriv, createDecipheriv, randomBytes, type KeyObject } from 'node:crypto';

import { METADATA_ENCODING_KEY, type Payload, type PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

import type { CodecKeyRing } from './keys';

export const ENCODING_ENCRYPTED = 'binary/encrypted';
export const METADATA_KEY_ID = 'encryption-key-id';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

const ProtoPayload = temporal.api.common.v1.Payload;

export class AesGcmPayloadCodec implements PayloadCodec {
  constructor(private readonly keys: CodecKeyRing) {}

  encode(payloads: Payload[]): Promise<Payload[]> {
    return settle(() => payloads.map((payload) => this.encrypt(payload)));
  }

  /** Payloads that are not encrypted (written before the codec was turned on) pass through unchanged. */
  decode(payloads: Payload[]): Promise<Payload[]> {
    return settle(() =>
      payloads.map((payload) =>
        encodingOf(payload) === ENCODING_ENCRYPTED ? this.decrypt(payload) : payload,
      ),
    );
  }

  private encrypt(payload: Payload): Payload {
    const keyId = this.keys.currentKeyId;
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.keyFor(keyId), nonce);
    const plaintext = ProtoPayload.encode(payload).finish();
    const data = Buffer.concat([nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    return {
      metadata: {
        [METADATA_ENCODING_KEY]: Buffer.from(ENCODING_ENCRYPTED),
        [METADATA_KEY_ID]: Buffer.from(keyId),
      },
      data,
    };
  }

  private decrypt(payload: Payload): Payload {
    const idBytes = payload.metadata?.[METADATA_KEY_ID];
    if (idBytes == null) throw new Error(`encrypted payload has no ${METADATA_KEY_ID} metadata`);
    const keyId = Buffer.from(idBytes).toString();
    const data = Buffer.from(payload.data ?? new Uint8Array());
    if (data.length < NONCE_BYTES + TAG_BYTES) {
      throw new Error(`encrypted payload (key ${JSON.stringify(keyId)}) is too short to be AES-GCM output`);
    }
    const decipher = createDecipheriv('aes-256-gcm', this.keyFor(keyId), data.subarray(0, NONCE_BYTES));
    decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
    let plaintext: Buffer;
    try {
      plaintext = Buffer.concat([
        decipher.update(data.subarray(NONCE_BYTES, data.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      throw new Error(
        `encrypted payload does not authenticate under key ${JSON.stringify(keyId)}: the key with that id differs from the one it was written with, or the payload was altered`,
      );
    }
    return ProtoPayload.decode(plaintext);
  }

  private keyFor(keyId: string): KeyObject {
    const key = this.keys.key(keyId);
    if (key === undefined) {
      throw new Error(
        `payload is encrypted with key id ${JSON.stringify(keyId)}, which is not among the configured keys (${this.keys.keyIds.join(', ')}); keep retired keys in the key file so old payloads stay readable`,
      );
    }
    return key;
  }
}

/** The work is synchronous; a failure still reaches the caller as a rejected promise. */
function settle<T>(work: () => T): Promise<T> {
  return new Promise((resolve) => resolve(work()));
}

function encodingOf(payload: Payload): string | undefined {
  const encoding = payload.metadata?.[METADATA_ENCODING_KEY];
  return encoding == null ? undefined : Buffer.from(encoding).toString();
}
