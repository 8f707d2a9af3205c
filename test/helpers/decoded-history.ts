/**
 * A workflow history read as its users read it: every payload of every event (inputs, results,
 * heartbeat details, signals, memo, search attributes, headers, the encoded message and stack
 * trace of failures at any nesting level) decoded through a data converter, payload codecs first
 * and then the payload converter. A search of the stored history as text would miss all of it:
 * payload data is bytes, and with a codec it is ciphertext.
 */
import type { DataConverter, Payload } from '@temporalio/common';
import { decode, loadDataConverter } from '@temporalio/common/lib/internal-non-workflow';
import type { temporal } from '@temporalio/proto';

/** One readable piece of a history: where it is (e.g. `events[4].activityTaskFailedEventAttributes.failure.encodedAttributes`) and its text. */
export interface HistoryText {
  path: string;
  text: string;
}

export interface DecodedHistory {
  texts: HistoryText[];
  /** How many payloads were decoded. */
  payloads: number;
  /** The paths where `needle` occurs. */
  find(needle: string): string[];
}

/** Reads every text and decoded payload of `history` with `converter` (the SDK default when undefined). */
export async function decodeHistory(
  history: temporal.api.history.v1.IHistory,
  converter?: DataConverter,
): Promise<DecodedHistory> {
  const loaded = loadDataConverter(converter);
  const texts: HistoryText[] = [];
  let payloads = 0;
  const visit = async (value: unknown, path: string): Promise<void> => {
    if (typeof value === 'string') {
      texts.push({ path, text: value });
    } else if (value instanceof Uint8Array) {
      texts.push({ path, text: Buffer.from(value).toString() });
    } else if (Array.isArray(value)) {
      for (const [i, item] of value.entries()) await visit(item, `${path}[${i}]`);
    } else if (isPayload(value)) {
      const [plain] = await decode(loaded.payloadCodecs, [value]);
      payloads += 1;
      texts.push({
        path,
        text: payloadText(plain!, loaded.payloadConverter.fromPayload.bind(loaded.payloadConverter)),
      });
    } else if (typeof value === 'object' && value !== null) {
      for (const [key, item] of Object.entries(value))
        await visit(item, path === '' ? key : `${path}.${key}`);
    }
  };
  await visit(history, '');
  return {
    texts,
    payloads,
    find: (needle) => texts.filter(({ text }) => text.includes(needle)).map(({ path }) => path),
  };
}

/** A payload: data bytes and metadata whose values are bytes (no other message of the API has both). */
function isPayload(value: unknown): value is Payload {
  if (typeof value !== 'object' || value === null) return false;
  const { data, metadata } = value as { data?: unknown; metadata?: unknown };
  return (
    data instanceof Uint8Array &&
    typeof metadata === 'object' &&
    metadata !== null &&
    Object.values(metadata).every((item) => item instanceof Uint8Array)
  );
}

/** The decoded value as JSON; a payload the converter cannot read (an encoding it does not know) as its bytes. */
function payloadText(payload: Payload, fromPayload: (payload: Payload) => unknown): string {
  let value: unknown;
  try {
    value = fromPayload(payload);
  } catch {
    return Buffer.from(payload.data ?? new Uint8Array()).toString();
  }
  if (typeof value === 'string') return value;
  return (
    JSON.stringify(value, (_key, item: unknown) =>
      item instanceof Uint8Array
        ? Buffer.from(item).toString()
        : typeof item === 'bigint'
          ? String(item)
          : item,
    ) ?? ''
  );
}
