// Open file descriptors and TCP sockets of a process, from Linux /proc: /proc/<pid>/fd lists the
// descriptors (a socket links to `socket:[inode]`), /proc/<pid>/net/tcp and tcp6 list every TCP
// socket of its network namespace with its inode, so the process's own sockets are those whose
// inode it holds. A socket whose local port is the listen port is a client connection; any other
// non-listening one is the ambassador's own (server connections, health probes, the admin
// endpoint's clients). parseProcNetTcp is pure and unit-tested; the readers throw when the process
// is gone.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** TCP states as /proc/net/tcp numbers them (include/net/tcp_states.h). */
const TCP_STATES: Readonly<Record<number, string>> = {
  1: 'ESTABLISHED', 2: 'SYN_SENT', 3: 'SYN_RECV', 4: 'FIN_WAIT1', 5: 'FIN_WAIT2', 6: 'TIME_WAIT',
  7: 'CLOSE', 8: 'CLOSE_WAIT', 9: 'LAST_ACK', 10: 'LISTEN', 11: 'CLOSING', 12: 'NEW_SYN_RECV',
};

export interface TcpSocket {
  localPort: number;
  remotePort: number;
  state: string;
  inode: number;
}

/** The rows of /proc/net/tcp or tcp6 (the header line skipped). */
export function parseProcNetTcp(text: string): TcpSocket[] {
  const sockets: TcpSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10) continue;
    const port = (address: string): number => Number.parseInt(address.slice(address.lastIndexOf(':') + 1), 16);
    const stateNumber = Number.parseInt(fields[3]!, 16);
    sockets.push({ localPort: port(fields[1]!), remotePort: port(fields[2]!), state: TCP_STATES[stateNumber] ?? `0x${fields[3]}`, inode: Number(fields[9]) });
  }
  return sockets;
}

export interface SocketCounts {
  /** Every open file descriptor. */
  fds: number;
  /** Descriptors that are sockets of any family. */
  sockets: number;
  /** TCP sockets on the listen port (not the listening socket): client connections. */
  clientTcp: number;
  /** Other TCP sockets, not listening: server connections, probes, admin clients. */
  otherTcp: number;
  /** TCP sockets of the process by state (CLOSE_WAIT piling up would be a leak of half-closed sockets). */
  byState: Record<string, number>;
}

/** Inodes of the sockets among the process's descriptors, and how many descriptors it has. */
function socketInodes(pid: number): { fds: number; inodes: Set<number> } {
  const entries = readdirSync(`/proc/${pid}/fd`);
  const inodes = new Set<number>();
  for (const entry of entries) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${entry}`);
    } catch {
      continue; // closed between the listing and the readlink
    }
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match) inodes.add(Number(match[1]));
  }
  return { fds: entries.length, inodes };
}

/** Counts for `pid` whose clients connect to `listenPort`. */
export function readSocketCounts(pid: number, listenPort: number): SocketCounts {
  const { fds, inodes } = socketInodes(pid);
  const counts: SocketCounts = { fds, sockets: inodes.size, clientTcp: 0, otherTcp: 0, byState: {} };
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue; // no IPv6
    }
    for (const socket of parseProcNetTcp(text)) {
      if (!inodes.has(socket.inode) || socket.inode === 0) continue;
      counts.byState[socket.state] = (counts.byState[socket.state] ?? 0) + 1;
      if (socket.state === 'LISTEN') continue;
      if (socket.localPort === listenPort) counts.clientTcp++;
      else counts.otherTcp++;
    }
  }
  return counts;
}
