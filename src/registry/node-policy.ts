import { PolicyError, type PolicyInput } from '../replica/index.js';

/** A node record (`node/<peerId>`) may only carry writes by that node. */
export function nodePolicy(input: PolicyInput): void {
  const owner = input.key.slice('node/'.length);
  let foreign: string | undefined;
  input.schema.visit(input.incoming, {
    writer: (w) => {
      if (w !== owner) foreign ??= w;
    },
    timestamp: () => {},
  });
  if (foreign !== undefined) {
    throw new PolicyError('not_owner', `node record ${owner} written by ${foreign}`, { key: input.key });
  }
}
