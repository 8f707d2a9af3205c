import assert from 'node:assert/strict';

import {
  DBInstanceAlreadyExistsFault,
  DBInstanceNotFoundFault,
  InsufficientDBInstanceCapacityFault,
  InvalidDBInstanceStateFault,
  InvalidDBSnapshotStateFault,
  InvalidExportSourceStateFault,
  PointInTimeRestoreNotEnabledFault,
  SnapshotQuotaExceededFault,
} from '@aws-sdk/client-rds';
import { NoSuchBucket } from '@aws-sdk/client-s3';

import { toDbopsError } from '../../../activities/control-plane/aws-errors';
import {
  AlreadyExistsError,
  BusyError,
  InvalidInputError,
  InvalidStateError,
  NotFoundError,
  PointInTimeRestoreNotEnabledError,
  QuotaExceededError,
  TransientError,
} from '../../../workflows/lib/errors';

const metadata = (httpStatusCode: number) => ({ $metadata: { httpStatusCode } });

/** An unmodelled AWS fault as the SDK raises it: the wire code as its name. */
function awsFault(name: string, httpStatusCode: number): Error {
  return Object.assign(new Error(`${name} happened`), { name, ...metadata(httpStatusCode) });
}

describe('AWS error mapping (SDK fault objects built in the test)', () => {
  const what = 'describing instance "mcp-demo-prod"';

  it('maps the modelled RDS faults onto the typed errors, naming the resource', () => {
    const cases: [Error, new (message: string) => Error][] = [
      [new DBInstanceAlreadyExistsFault({ message: 'exists', ...metadata(400) }), AlreadyExistsError],
      [new DBInstanceNotFoundFault({ message: 'missing', ...metadata(404) }), NotFoundError],
      [new InvalidDBSnapshotStateFault({ message: 'deleting', ...metadata(400) }), InvalidStateError],
      [new SnapshotQuotaExceededFault({ message: 'full', ...metadata(400) }), QuotaExceededError],
      [
        new PointInTimeRestoreNotEnabledFault({ message: 'off', ...metadata(400) }),
        PointInTimeRestoreNotEnabledError,
      ],
      [new NoSuchBucket({ message: 'no bucket', ...metadata(404) }), NotFoundError],
    ];
    for (const [fault, expected] of cases) {
      const mapped = toDbopsError(fault, what);
      assert.ok(mapped instanceof expected, `${fault.name} -> ${expected.name}, got ${mapped.name}`);
      assert.ok(mapped.message.startsWith(`${what}: `), mapped.message);
      assert.ok(mapped.message.includes(fault.name.replace(/Fault$/, '')), mapped.message);
    }
  });

  it('maps the conditions that pass on their own onto BusyError (retried), naming the code', () => {
    for (const fault of [
      new InvalidDBInstanceStateFault({ message: 'Instance is backing-up', ...metadata(400) }),
      new InvalidExportSourceStateFault({ message: 'Snapshot is creating', ...metadata(400) }),
      new InsufficientDBInstanceCapacityFault({ message: 'No capacity', ...metadata(400) }),
    ]) {
      const mapped = toDbopsError(fault, what);
      const code = fault.name.replace(/Fault$/, '');
      assert.ok(mapped instanceof BusyError && mapped.retryable, `${fault.name}: ${mapped.name}`);
      assert.equal(mapped.providerCode, code);
      assert.equal(mapped.message, `waiting: ${what}: ${fault.message} (${code}, HTTP 400)`);
    }
  });

  it('treats throttling, 429, 5xx and connection resets as transient', () => {
    for (const fault of [
      awsFault('Throttling', 400),
      awsFault('ThrottlingException', 400),
      awsFault('RequestLimitExceeded', 503),
      awsFault('SomethingNew', 429),
      awsFault('InternalFailure', 500),
      Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }),
    ]) {
      const mapped = toDbopsError(fault, what);
      assert.ok(mapped instanceof TransientError && mapped.retryable, `${fault.name}: ${mapped.name}`);
    }
  });

  it('fails fast on invalid parameters and on any other refusal (access denied)', () => {
    assert.ok(toDbopsError(awsFault('InvalidParameterCombination', 400), what) instanceof InvalidInputError);
    const denied = toDbopsError(awsFault('AccessDenied', 403), what);
    assert.ok(denied instanceof InvalidInputError);
    assert.match(denied.message, /AccessDenied, HTTP 403/);
  });

  it('passes our own typed errors and non-AWS errors through unchanged', () => {
    const ours = new NotFoundError('already typed');
    assert.equal(toDbopsError(ours, what), ours);
    const bug = new TypeError('x is undefined');
    assert.equal(toDbopsError(bug, what), bug);
  });
});
