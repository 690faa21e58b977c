/**
 * The diskless snapshot's framing: an RDB of unknown length, ended by a
 * 40-byte mark, must come out byte for byte however TCP splits it, the mark
 * included (whole at the end of a big chunk, split across small ones, alone).
 * Real Redis cannot be made to split its stream on demand, so a loopback
 * socket plays the server's side of SYNC here; the real server's transfers
 * are in test/integration/redis.test.ts.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { snapshot } from '../../src/adapters/redis.ts';

const MARK = 'f'.repeat(20) + '0123456789abcdefghij';

/** "REDIS0011", a body, the EOF opcode and an 8-byte checksum: enough for the stream's own checks. */
function fakeRdb(bodyBytes: number): Buffer {
  const body = Buffer.alloc(bodyBytes);
  for (let i = 0; i < bodyBytes; i++) body[i] = (i * 31 + 7) & 0xff;
  return Buffer.concat([Buffer.from('REDIS0011', 'latin1'), body, Buffer.from([0xff]), Buffer.alloc(8, 1)]);
}

const servers: Server[] = [];
after(() => servers.forEach((s) => s.close()));

/** Answers the handshake, then sends the header and `rdb` + mark in the given piece sizes, each written on its own. */
async function serve(rdb: Buffer, pieces: number[]): Promise<string> {
  const wire = Buffer.concat([rdb, Buffer.from(MARK, 'latin1')]);
  const server = createServer((socket: Socket) => {
    socket.setNoDelay(true);
    let seen = '';
    let answered = 0;
    socket.on('data', async (d) => {
      seen += d.toString('latin1');
      // REPLCONF capa eof, REPLCONF rdb-only 1: each answered OK as it arrives, then SYNC.
      for (; answered < (seen.match(/REPLCONF/g)?.length ?? 0); answered++) socket.write('+OK\r\n');
      if (!seen.endsWith('SYNC\r\n')) return;
      seen = '';
      socket.write(`\n\n$EOF:${MARK}\r\n`);
      let at = 0;
      for (const size of pieces) {
        await sleep(2); // its own read on the other side, most of the time
        socket.write(wire.subarray(at, (at += size)));
      }
      if (at < wire.length) socket.write(wire.subarray(at));
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `redis://127.0.0.1:${(server.address() as AddressInfo).port}/0`;
}

async function read(url: string): Promise<{ bytes: Buffer; rawBytes: number }> {
  const snap = snapshot({ url }, { idleTimeoutMs: 5000 });
  const parts: Buffer[] = [];
  for await (const chunk of snap.stream) parts.push(Buffer.from(chunk));
  const info = await snap.done;
  return { bytes: Buffer.concat(parts), rawBytes: info.rawBytes };
}

describe('diskless snapshot framing', () => {
  const rdb = fakeRdb(200_000);
  const cases: Record<string, number[]> = {
    'in big chunks, the mark at the end of the last': [65_536, 65_536, rdb.length - 131_072 + 40],
    'the mark alone in the last chunk': [100_000, rdb.length - 100_000, 40],
    'the mark split across small chunks after a big one': [rdb.length - 10, 10 + 15, 5, 10, 10],
    'a chunk of one byte at a time at the end': [rdb.length - 3, ...Array(43).fill(1)],
    'the mark split between a big chunk and a small one': [rdb.length + 25, 15],
  };
  for (const [name, pieces] of Object.entries(cases)) {
    it(name, async () => {
      const got = await read(await serve(rdb, pieces));
      assert.equal(got.rawBytes, rdb.length);
      assert.ok(got.bytes.equals(rdb), 'the RDB, byte for byte, without the mark');
    });
  }
});
