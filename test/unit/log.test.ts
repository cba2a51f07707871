import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { logger, setLogLevel } from '../../src/util/log.js';

// Created "at import time", as components do, before any level is set.
const early = logger('mesh:test-early');
const earlyChild = early.child({ peer: 'p1' });

describe('setLogLevel', () => {
  it('reaches loggers created before it was called, and their children', () => {
    setLogLevel('warn');
    assert.equal(early.isLevelEnabled('debug'), false);
    setLogLevel('debug');
    assert.equal(early.level, 'debug');
    assert.equal(earlyChild.level, 'debug', 'a child of a component logger follows too');
    assert.equal(logger('mesh:test-late').level, 'debug', 'a logger created afterwards starts at the level');
    setLogLevel('silent');
    assert.equal(early.isLevelEnabled('fatal'), false);
    assert.equal(earlyChild.level, 'silent');
  });
});
