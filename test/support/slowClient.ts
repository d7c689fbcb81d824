/** A slow client (slowloris): raw TCP, a request written a byte at a time, for the servers' timeout tests. */
import { connect } from 'node:net';

export interface SlowClient {
  /** Settles once the server closes the connection, with everything it sent back. */
  closed: Promise<string>;
  /** Bytes of `drip` written before the close. */
  readonly written: number;
  destroy(): void;
}

/** Connects to 127.0.0.1:`port`, writes `head` at once, then one more character of `drip` every `everyInMs`. */
export function slowClient(port: number, head: string, drip: string, everyInMs = 50): SlowClient {
  const socket = connect({ host: '127.0.0.1', port });
  let received = '';
  let written = 0;
  const dripper = setInterval(() => {
    if (written < drip.length && socket.writable) socket.write(drip[written++]!);
  }, everyInMs);
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (received += chunk));
  const closed = new Promise<string>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('close', () => {
      clearInterval(dripper);
      resolve(received);
    });
  });
  if (head !== '') socket.write(head);
  return {
    closed,
    get written() {
      return written;
    },
    destroy: () => {
      clearInterval(dripper);
      socket.destroy();
    },
  };
}
