import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

import { AesGcmPayloadCodec } from '../../../workers/codec/aes-gcm-codec';
import { CodecKeyRing } from '../../../workers/codec/keys';

const K1 = randomBytes(32).toString('base64');
const K2 = randomBytes(32).toString('base64');
const MARKER = 'customer-list-7f3a9c';

const text = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? new Uint8Array()).toString();
const plain = (value: unknown): Payload => defaultPayloadConverter.toPayload(value);

describe('AES-256-GCM payload codec', () => {
  const underK1 = new AesGcmPayloadCodec(new CodecKeyRing('k1', { k1: K1 }));
  const rotated = new AesGcmPayloadCodec(new CodecKeyRing('k2', { k1: K1, k2: K2 }));
  const onlyK2 = new AesGcmPayloadCodec(new CodecKeyRing('k2', { k2: K2 }));

  it('encrypts the whole payload under the current key: encoding binary/encrypted, the key id, no plaintext', async () => {
    const original = plain({ note: MARKER });
    const [encrypted] = await rotated.encode([original]);
    assert.deepEqual(Object.keys(encrypted!.metadata ?? {}).sort(), ['encoding', 'encryption-key-id']);
    assert.equal(text(encrypted!.metadata?.encoding), 'binary/encrypted');
    assert.equal(text(encrypted!.metadata?.['encryption-key-id']), 'k2');
    const data = Buffer.from(encrypted!.data!);
    assert.ok(!data.includes(MARKER), 'the value is not readable');
    assert.ok(!data.includes('json/plain'), 'nor is its original encoding');
    const serialised = temporal.api.common.v1.Payload.encode(original).finish();
    assert.equal(data.length, 12 + serialised.length + 16, 'nonce + ciphertext + tag');
  });

  it('decrypts back to the identical payload', async () => {
    const originals = [plain({ note: MARKER }), plain(null), plain([1, 2, 3]), plain('')];
    const decoded = await rotated.decode(await rotated.encode(originals));
    assert.deepEqual(
      decoded.map((p) => defaultPayloadConverter.fromPayload(p)),
      [{ note: MARKER }, null, [1, 2, 3], ''],
    );
    assert.deepEqual(
      decoded.map((p) => text(p.metadata?.encoding)),
      originals.map((p) => text(p.metadata?.encoding)),
    );
  });

  it('uses a fresh random nonce for every payload: the same value twice gives different ciphertexts', async () => {
    const [a, b] = await rotated.encode([plain(MARKER), plain(MARKER)]);
    assert.notDeepEqual(Buffer.from(a!.data!).subarray(0, 12), Buffer.from(b!.data!).subarray(0, 12));
    assert.notDeepEqual(Buffer.from(a!.data!), Buffer.from(b!.data!));
  });

  it('rotation: a payload written under k1 still decodes after k2 becomes current; new payloads use k2', async () => {
    const [old] = await underK1.encode([plain({ note: MARKER })]);
    assert.equal(text(old!.metadata?.['encryption-key-id']), 'k1');
    const [decoded] = await rotated.decode([old!]);
    assert.deepEqual(defaultPayloadConverter.fromPayload(decoded!), { note: MARKER });
    const [fresh] = await rotated.encode([plain({ note: MARKER })]);
    assert.equal(text(fresh!.metadata?.['encryption-key-id']), 'k2');
  });

  it('an unknown key id on decode is a clear error naming the id and the configured ids', async () => {
    const [old] = await underK1.encode([plain({ note: MARKER })]);
    await assert.rejects(
      onlyK2.decode([old!]),
      new Error(
        'payload is encrypted with key id "k1", which is not among the configured keys (k2); keep retired keys in the key file so old payloads stay readable',
      ),
    );
  });

  it('refuses an altered payload, and a key that has the right id but other bytes', async () => {
    const [encrypted] = await underK1.encode([plain({ note: MARKER })]);
    const altered = Buffer.from(encrypted!.data!);
    altered[20] = altered[20]! ^ 1;
    await assert.rejects(
      underK1.decode([{ ...encrypted!, data: altered }]),
      /does not authenticate under key "k1": .*or the payload was altered/,
    );
    const impostor = new AesGcmPayloadCodec(
      new CodecKeyRing('k1', { k1: randomBytes(32).toString('base64') }),
    );
    await assert.rejects(impostor.decode([encrypted!]), /does not authenticate under key "k1"/);
  });

  it('refuses an encrypted payload without a key id or too short to hold a nonce and tag', async () => {
    const [encrypted] = await underK1.encode([plain(MARKER)]);
    await assert.rejects(
      underK1.decode([{ metadata: { encoding: encrypted!.metadata!.encoding! }, data: encrypted!.data! }]),
      /encrypted payload has no encryption-key-id metadata/,
    );
    await assert.rejects(
      underK1.decode([{ ...encrypted!, data: new Uint8Array(20) }]),
      /encrypted payload \(key "k1"\) is too short/,
    );
  });

  it('passes unencrypted payloads (written before the codec was turned on) through decode unchanged', async () => {
    const old = plain({ note: MARKER });
    assert.deepEqual(await rotated.decode([old]), [old]);
  });
});
