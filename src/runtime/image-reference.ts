// Image references in the familiar form Docker lists as an image's RepoTags (`alpine:latest`
// for `docker.io/library/alpine`), so that a reference a task named can be compared with them.

/**
 * The tag a reference names, as Docker lists it; undefined for a digest reference
 * (`name@sha256:…`), which names content rather than a tag.
 */
export function familiarTag(reference: string): string | undefined {
  if (reference.includes('@')) return undefined;
  let domain = '';
  let rest = reference;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    // Docker's rule: the first component is a registry when it looks like a host.
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      domain = first;
      rest = rest.slice(slash + 1);
    }
  }
  if (domain === 'docker.io' || domain === 'index.docker.io') domain = '';
  if (domain === '' && rest.startsWith('library/') && rest.split('/').length === 2) rest = rest.slice('library/'.length);
  const lastComponent = rest.slice(rest.lastIndexOf('/') + 1);
  const tagged = lastComponent.includes(':');
  return `${domain ? `${domain}/` : ''}${rest}${tagged ? '' : ':latest'}`;
}
