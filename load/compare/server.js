// Socket.IO 4 server for the comparison: clients join the room named in their handshake query; a "publish"
// event is broadcast to that room. With REDIS_URL set it uses @socket.io/redis-adapter, as a cluster would.
'use strict';
const http = require('http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

const port = Number(process.env.PORT || 7660);

(async () => {
  const httpServer = http.createServer();
  const io = new Server(httpServer, { transports: ['websocket'], perMessageDeflate: false, serveClient: false });
  if (process.env.REDIS_URL) {
    const pub = createClient({ url: process.env.REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  io.on('connection', (socket) => {
    const room = socket.handshake.query.room;
    if (room) socket.join(room);
    socket.on('publish', (to, message) => io.to(to).emit('event', message));
  });
  httpServer.listen(port, '127.0.0.1', () => console.log(`socket.io listening on 127.0.0.1:${port}`));
})();
