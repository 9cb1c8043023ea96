import Type, { type Static } from 'typebox';

/** The original's version document. */
export const Version = Type.Object(
  {
    version: Type.String(),
    githash: Type.String(),
    buildstamp: Type.String(),
  },
  { $id: 'Version' },
);
export type Version = Static<typeof Version>;
