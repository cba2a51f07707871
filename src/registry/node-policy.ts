import { PolicyError, type PolicyInput } from '../replica/index.js';
import { nodeSchema } from './node-schema.js';

const FORGOTTEN = nodeSchema.indexOf('forgotten');

/**
 * A node record (`node/<peerId>`) may only carry writes by that node, except its `forgotten`
 * mark: any member may write that one, since the point of forgetting a peer is that the peer is
 * dead and will never write again (`mesh peer forget`).
 */
export function nodePolicy(input: PolicyInput): void {
  const owner = input.key.slice('node/'.length);
  let foreign: string | undefined;
  const ownerFields = input.incoming[FORGOTTEN] === undefined ? input.incoming : input.incoming.slice();
  if (ownerFields !== input.incoming) (ownerFields as unknown[])[FORGOTTEN] = undefined;
  input.schema.visit(ownerFields, {
    writer: (w) => {
      if (w !== owner) foreign ??= w;
    },
    timestamp: () => {},
  });
  if (foreign !== undefined) {
    throw new PolicyError('not_owner', `node record ${owner} written by ${foreign}`, { key: input.key });
  }
}
