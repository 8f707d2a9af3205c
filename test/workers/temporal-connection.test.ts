import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

import { Connection } from '@temporalio/client';

import { loadConfig } from '../../workers/config';
import { clientConnectionOptions, connectWorker, dataConverter } from '../../workers/temporal-connection';
import { makeTestPki, type TestPki } from '../helpers/tls';

interface Handshake {
  clientCn: string | undefined;
  authorized: boolean;
}

/**
 * An HTTP/2 TLS server that demands a client certificate from the test CA, standing in for a
 * hardened Temporal frontend (the dev server has no TLS). It records each accepted client and
 * answers every gRPC call UNIMPLEMENTED, which the SDK's connect check accepts (old servers).
 */
async function startMtlsServer(pki: TestPki) {
  const handshakes: Handshake[] = [];
  const refused: string[] = [];
  const calls: string[] = [];
  const server = http2.createSecureServer({
    cert: await readFile(pki.server.cert),
    key: await readFile(pki.server.key),
    ca: await readFile(pki.ca),
    requestCert: true,
    rejectUnauthorized: true,
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    const subject = socket.getPeerCertificate().subject as Record<string, string> | undefined;
    handshakes.push({ clientCn: subject?.CN, authorized: socket.authorized });
  });
  server.on('tlsClientError', (error: Error) => refused.push(error.message));
  server.on('stream', (stream, headers) => {
    calls.push(String(headers[':path']));
    stream.respond(
      {
        ':status': 200,
        'content-type': 'application/grpc',
        'grpc-status': '12',
        'grpc-message': 'test server',
      },
      { endStream: true },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    handshakes,
    refused,
    calls,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('Temporal connection: mTLS against a TLS server that requires client certificates', () => {
  let pki: TestPki;
  let server: Awaited<ReturnType<typeof startMtlsServer>>;

  before(async () => {
    pki = await makeTestPki();
    server = await startMtlsServer(pki);
  });
  beforeEach(() => {
    server.handshakes.length = 0;
    server.refused.length = 0;
    server.calls.length = 0;
  });
  after(async () => {
    await server?.stop();
    await pki?.remove();
  });

  const env = (extra: Record<string, string>) => ({
    TEMPORAL_ADDRESS: server.address,
    TEMPORAL_TLS_CA: pki.ca,
    // The address is an IP; the certificate is checked for this name instead.
    TEMPORAL_TLS_SERVER_NAME: 'localhost',
    ...extra,
  });

  it('the client presents its certificate, verifies the server against TEMPORAL_TLS_CA and gets its answer', async () => {
    const { temporal } = loadConfig(
      env({ TEMPORAL_TLS_CERT: pki.client.cert, TEMPORAL_TLS_KEY: pki.client.key }),
    );
    const connection = await Connection.connect(clientConnectionOptions(temporal));
    await connection.close();
    assert.deepEqual(server.handshakes, [{ clientCn: 'dbops-worker', authorized: true }]);
    assert.deepEqual(server.calls, ['/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo']);
  });

  it('the worker connection presents the same certificate', async () => {
    const { temporal } = loadConfig(
      env({ TEMPORAL_TLS_CERT: pki.client.cert, TEMPORAL_TLS_KEY: pki.client.key }),
    );
    // The worker's connect check may not accept the stand-in's UNIMPLEMENTED; the handshake is the point.
    const connection = await connectWorker(temporal).catch(() => undefined);
    await connection?.close();
    assert.ok(server.handshakes.length > 0, 'the worker completed a TLS handshake');
    assert.ok(
      server.handshakes.every((h) => h.clientCn === 'dbops-worker' && h.authorized),
      JSON.stringify(server.handshakes),
    );
  });

  it('without a client certificate the server refuses the connection', async () => {
    const { temporal } = loadConfig(env({}));
    await assert.rejects(Connection.connect({ ...clientConnectionOptions(temporal), connectTimeout: '2s' }));
    assert.deepEqual(server.handshakes, []);
    assert.deepEqual(server.calls, []);
    assert.ok(server.refused.length > 0, 'the server refused the handshake');
  });

  it('a certificate from another CA is refused (the server checks whose it is, not only that there is one)', async () => {
    const { temporal } = loadConfig(
      env({ TEMPORAL_TLS_CERT: pki.stranger.cert, TEMPORAL_TLS_KEY: pki.stranger.key }),
    );
    await assert.rejects(Connection.connect({ ...clientConnectionOptions(temporal), connectTimeout: '2s' }));
    assert.deepEqual(server.handshakes, []);
    assert.deepEqual(server.calls, []);
    assert.ok(server.refused.length > 0, 'the server refused the handshake');
  });

  it('the client refuses a server whose certificate does not chain to TEMPORAL_TLS_CA', async () => {
    const { temporal } = loadConfig(
      env({
        TEMPORAL_TLS_CA: pki.otherCa,
        TEMPORAL_TLS_CERT: pki.client.cert,
        TEMPORAL_TLS_KEY: pki.client.key,
      }),
    );
    await assert.rejects(Connection.connect({ ...clientConnectionOptions(temporal), connectTimeout: '2s' }));
    assert.deepEqual(server.calls, []);
  });

  it('uses no TLS and the SDK data converter when nothing is configured', () => {
    const { temporal } = loadConfig({});
    assert.deepEqual(clientConnectionOptions(temporal), { address: 'localhost:7233' });
    assert.equal(dataConverter(temporal), undefined);
  });
});
