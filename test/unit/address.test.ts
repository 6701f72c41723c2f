import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLoopbackHost, parseHostPort, portOf, splitHostPort, stripBrackets, unmapIPv4 } from '../../src/common/address.js';
import { peerIp } from '../../src/master/master-errors.js';

test('host:port splits at its last colon, IPv6 brackets kept until stripped', () => {
  assert.deepEqual(splitHostPort('127.0.0.1:7070'), { host: '127.0.0.1', port: '7070' });
  assert.deepEqual(splitHostPort('[::1]:7070'), { host: '[::1]', port: '7070' });
  assert.deepEqual(splitHostPort('master.example:51820'), { host: 'master.example', port: '51820' });
  assert.equal(portOf('0.0.0.0:7443'), 7443);
  assert.equal(portOf('[fd00::1]:0'), 0);
  assert.ok(Number.isNaN(portOf('host:http')));
  assert.equal(stripBrackets('[::1]'), '::1');
  assert.equal(stripBrackets('::1'), '::1');
  assert.equal(stripBrackets('127.0.0.1'), '127.0.0.1');
});

test('a Host header or peer reads as host and optional port; anything else is not an address', () => {
  assert.deepEqual(parseHostPort('localhost:5001'), { host: 'localhost', port: 5001 });
  assert.deepEqual(parseHostPort('localhost'), { host: 'localhost' });
  assert.deepEqual(parseHostPort('[::1]:5001'), { host: '::1', port: 5001 });
  assert.deepEqual(parseHostPort('[::1]'), { host: '::1' });
  for (const bad of ['::1', 'a:b', 'host:', ':80', '[::1]:x', '']) assert.equal(parseHostPort(bad), undefined, bad);
});

test('loopback: localhost, 127.0.0.0/8 and ::1, in any case and with brackets; nothing else', () => {
  for (const h of ['127.0.0.1', 'localhost', 'LOCALHOST', '::1', '[::1]', '127.1.2.3']) assert.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '::', '[::]', '192.168.1.5', '127.evil.example', 'localhost.evil.example', '::ffff:127.0.0.1', '']) assert.ok(!isLoopbackHost(h), h);
});

test('a gRPC peer string gives its IP, IPv4-mapped IPv6 unwrapped', () => {
  assert.equal(peerIp('ipv4:10.0.0.2:51234'), '10.0.0.2');
  assert.equal(peerIp('10.0.0.2:51234'), '10.0.0.2');
  assert.equal(peerIp('ipv6:[fd00::2]:51234'), 'fd00::2');
  assert.equal(peerIp('[::ffff:10.0.0.2]:51234'), '10.0.0.2');
  assert.equal(peerIp('fd00::2'), 'fd00::2');
  assert.equal(peerIp('10.0.0.2'), '10.0.0.2');
});

test('a v4-mapped v6 address reads as its IPv4, read one way by the master (gRPC peers) and the node (pipe callers)', () => {
  assert.equal(unmapIPv4('::ffff:10.8.0.1'), '10.8.0.1');
  assert.equal(unmapIPv4('10.8.0.1'), '10.8.0.1');
  assert.equal(unmapIPv4('::1'), '::1');
  assert.equal(unmapIPv4('::ffff:abcd'), '::ffff:abcd', 'not an IPv4 behind the prefix: left as it is');
});
