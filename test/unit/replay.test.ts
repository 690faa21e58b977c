/**
 * Replays recorded histories (test/replay/histories, made by
 * test/replay/record.ts) against today's workflow code: a change that would
 * break a run in flight fails here, not in production.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { REPO_ROOT } from '../../deploy/bed/bed.ts';
import { WORKFLOW_BUNDLE } from '../../workers/build.ts';

const dir = join(REPO_ROOT, 'test/replay/histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

describe('replay of recorded histories', () => {
  it('there are histories to replay', () => assert.ok(files.length >= 4, files.join(', ')));
  for (const file of files) {
    it(`replays ${file} without nondeterminism`, async () => {
      // The SDK takes the CLI's JSON export as it is.
      const history: unknown = JSON.parse(readFileSync(join(dir, file), 'utf8'));
      await Worker.runReplayHistory({ workflowBundle: { codePath: WORKFLOW_BUNDLE } }, history);
    });
  }
});
