// /proc/net/tcp rows: ports and states decoded from hex, the inode that ties a row to a process's
// descriptors.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseProcNetTcp } from '../../../soak/proc-sockets.ts';

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:B68D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0
   1: 0100007F:B68D 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 123457 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:9C5E 0100007F:B1A3 08 00000000:00000001 00:00000000 00000000     0        0 123458 1 0000000000000000 20 4 0 10 -1
   3: 0100007F:9C60 0100007F:B1A3 06 00000000:00000000 03:00000F3A 00000000     0        0 0 3 0000000000000000
`;

const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:C350 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 0 10 -1
`;

test('IPv4 rows: listen, established, close-wait and time-wait with their ports and inodes', () => {
  assert.deepEqual(parseProcNetTcp(TCP), [
    { localPort: 46733, remotePort: 0, state: 'LISTEN', inode: 123456 },
    { localPort: 46733, remotePort: 54000, state: 'ESTABLISHED', inode: 123457 },
    { localPort: 40030, remotePort: 45475, state: 'CLOSE_WAIT', inode: 123458 },
    { localPort: 40032, remotePort: 45475, state: 'TIME_WAIT', inode: 0 },
  ]);
});

test('IPv6 rows, the header alone, and blank lines', () => {
  assert.deepEqual(parseProcNetTcp(TCP6), [{ localPort: 8080, remotePort: 50000, state: 'ESTABLISHED', inode: 777 }]);
  assert.deepEqual(parseProcNetTcp(TCP.split('\n')[0]!), []);
  assert.deepEqual(parseProcNetTcp(''), []);
});
