import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { imageReferenceProblem } from '../../src/domain/image.ts';

describe('image references (distribution/reference grammar)', () => {
  it('accepts what registries accept', () => {
    for (const ok of [
      'nginx',
      'nginx:1.27',
      'library/nginx:1.27-alpine',
      'ghcr.io/acme/api:v2.3.1',
      'localhost:5000/api',
      'registry.example.com:443/team/app_name:build__7',
      `acme/api@sha256:${'a'.repeat(64)}`,
      `acme/api:v1@sha256:${'b'.repeat(64)}`,
      '[::1]:5000/api:v1',
    ]) {
      assert.equal(imageReferenceProblem(ok), undefined, ok);
    }
  });

  it('names what is wrong', () => {
    const cases: [string, RegExp][] = [
      ['', /is empty/],
      ['Acme/api:v1', /invalid repository part "Acme"/],
      ['acme/api:v1 ', /invalid tag "v1 "/],
      ['acme/api:-v1', /invalid tag "-v1"/],
      ['acme//api', /invalid repository part ""/],
      ['acme/api@sha256:xyz', /invalid digest "sha256:xyz"/],
      ['acme/api:' + 'x'.repeat(129), /invalid tag/],
      ['bad_host.example.com/api', /invalid registry "bad_host.example.com"/],
      ['acme/api_', /invalid repository part "api_"/],
    ];
    for (const [ref, problem] of cases) assert.match(imageReferenceProblem(ref) ?? 'accepted', problem, JSON.stringify(ref));
  });
});
