// Free TCP ports on 127.0.0.1, chosen by the OS (listen on port 0, read it, close). The port is
// free when returned, not reserved: bind it soon. Never returns 5432 or a port handed out before
// by this process, so servers started together get distinct ports.

import net from 'node:net';

const handedOut = new Set<number>();

function askOs(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('listen on port 0 returned no address'));
      });
    });
  });
}

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await askOs();
    if (port !== 5432 && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('could not get a fresh free port from the OS after 50 attempts');
}
