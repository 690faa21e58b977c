/**
 * Container image references, checked with the grammar the container runtime
 * uses (distribution/reference), so a typo fails before anything changes
 * instead of as an ErrImagePull minutes into a rollout.
 */

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;

/** Undefined when `ref` is a valid image reference, else what is wrong with it. */
export function imageReferenceProblem(ref: string): string | undefined {
  if (ref.length === 0) return 'is empty';
  let rest = ref;
  const at = rest.indexOf('@');
  if (at >= 0) {
    if (!DIGEST.test(rest.slice(at + 1))) return `has an invalid digest "${rest.slice(at + 1)}"`;
    rest = rest.slice(0, at);
  }
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    const tag = rest.slice(colon + 1);
    if (!TAG.test(tag)) return `has an invalid tag "${tag}" (letters, digits, _ . -, at most 128, not starting with . or -)`;
    rest = rest.slice(0, colon);
  }
  if (rest.length > 255) return 'has a repository name longer than 255 characters';
  const parts = rest.split('/');
  // As in docker: the first part is a registry only if it has a dot or a port, or is localhost.
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    if (!DOMAIN.test(first)) return `has an invalid registry "${first}"`;
    parts.shift();
  }
  for (const part of parts) {
    if (!PATH_COMPONENT.test(part)) return `has an invalid repository part "${part}" (lower-case letters, digits, and . _ - between them)`;
  }
  return undefined;
}
