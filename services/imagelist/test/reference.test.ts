import { describe, expect, it } from 'vitest';
import { isName, isTag, normalizeName, parseImageId, parseReference } from '../src/reference.js';

const HEX = 'b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c';

describe('image names', () => {
  it.each([
    'nginx',
    'library/nginx',
    'quay.io/foo/nginx',
    'localhost:5000/app',
    'my-registry.example.com:443/a/b/c',
    'a__b/c.d/e---f',
    'Registry.Example.com/x',
    '[::1]:5000/app',
  ])('accepts %s', (name) => expect(isName(name)).toBe(true));
  it.each([
    '',
    'Nginx',
    'foo/Bar',
    'foo//bar',
    '/foo',
    'foo/',
    'foo/-bar',
    'foo/bar-',
    'foo/bar_',
    'a___b',
    'nginx:latest',
    `a/${'b'.repeat(254)}`,
    'foo bar',
  ])('rejects %j', (name) => expect(isName(name)).toBe(false));
});

describe('tags', () => {
  it.each(['latest', 'v1.0', '1.25-alpine', '_x', 'A'.repeat(128)])('accepts %s', (t) => expect(isTag(t)).toBe(true));
  it.each(['', '.v1', '-v1', 'a/b', 'v:1', 'A'.repeat(129)])('rejects %j', (t) => expect(isTag(t)).toBe(false));
});

describe('ids', () => {
  it('normalises every accepted form to the bare digest', () => {
    expect(parseImageId(HEX)).toEqual({ digest: HEX });
    expect(parseImageId(`sha256:${HEX}`)).toEqual({ digest: HEX });
    expect(parseImageId(`quay.io/foo/nginx@sha256:${HEX}`)).toEqual({ digest: HEX, name: 'quay.io/foo/nginx' });
  });
  it.each([HEX.toUpperCase(), HEX.slice(2), `sha512:${HEX}`, `nginx@${HEX}`, `Bad/Name@sha256:${HEX}`, `${HEX}0`, `sha256:${HEX}:x`])(
    'rejects %s',
    (id) => expect(parseImageId(id)).toBeUndefined(),
  );
});

describe('normalisation', () => {
  it.each([
    ['nginx', 'docker.io/library/nginx'],
    ['library/nginx', 'docker.io/library/nginx'],
    ['user/app', 'docker.io/user/app'],
    ['docker.io/nginx', 'docker.io/library/nginx'],
    ['index.docker.io/nginx', 'docker.io/library/nginx'],
    ['quay.io/foo/nginx', 'quay.io/foo/nginx'],
    ['localhost/app', 'localhost/app'],
    ['localhost:5000/app', 'localhost:5000/app'],
  ])('%s → %s', (name, normal) => expect(normalizeName(name)).toBe(normal));

  it('parses references with the default tag, and lets the digest win', () => {
    expect(parseReference('nginx')).toEqual({ name: 'docker.io/library/nginx', tag: 'latest' });
    expect(parseReference('quay.io/foo/app:v1')).toEqual({ name: 'quay.io/foo/app', tag: 'v1' });
    expect(parseReference(`app:v1@sha256:${HEX}`)).toEqual({ name: 'docker.io/library/app', tag: 'v1', digest: HEX });
    expect(parseReference(`localhost:5000/app@sha256:${HEX}`)).toEqual({ name: 'localhost:5000/app', digest: HEX });
    expect(parseReference('Nginx')).toBeUndefined();
    expect(parseReference('nginx:')).toBeUndefined();
  });
});
