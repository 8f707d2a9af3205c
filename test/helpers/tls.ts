/** A throwaway certificate authority with a server and a client certificate, made with openssl. */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface TestPki {
  dir: string;
  /** The CA certificate both sides trust. */
  ca: string;
  /** For 127.0.0.1 and localhost. */
  server: { cert: string; key: string };
  /** CN=dbops-worker, for client authentication. */
  client: { cert: string; key: string };
  /** Another CA, which signed nothing of the above. */
  otherCa: string;
  /** A client certificate from the other CA (a stranger). */
  stranger: { cert: string; key: string };
  remove: () => Promise<void>;
}

export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dbops-pki-'));
  const file = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => execFileAsync('openssl', args);
  // P-256 keys: made in milliseconds, unlike RSA.
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const makeCa = async (name: string) => {
    await openssl(
      'req',
      '-x509',
      ...newKey,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-keyout',
      file(`${name}.key`),
      '-out',
      file(`${name}.crt`),
    );
  };
  const issue = async (name: string, ca: string, subject: string, extensions: string) => {
    await openssl(
      'req',
      ...newKey,
      '-subj',
      subject,
      '-keyout',
      file(`${name}.key`),
      '-out',
      file(`${name}.csr`),
    );
    await writeFile(file(`${name}.ext`), extensions);
    await openssl(
      'x509',
      '-req',
      '-in',
      file(`${name}.csr`),
      '-CA',
      file(`${ca}.crt`),
      '-CAkey',
      file(`${ca}.key`),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      file(`${name}.ext`),
      '-out',
      file(`${name}.crt`),
    );
    return { cert: file(`${name}.crt`), key: file(`${name}.key`) };
  };
  await makeCa('test-ca');
  await makeCa('other-ca');
  const server = await issue(
    'server',
    'test-ca',
    '/CN=127.0.0.1',
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
  );
  const client = await issue('client', 'test-ca', '/CN=dbops-worker', 'extendedKeyUsage=clientAuth\n');
  const stranger = await issue('stranger', 'other-ca', '/CN=stranger', 'extendedKeyUsage=clientAuth\n');
  return {
    dir,
    ca: file('test-ca.crt'),
    server,
    client,
    otherCa: file('other-ca.crt'),
    stranger,
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
