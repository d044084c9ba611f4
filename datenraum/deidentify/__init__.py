"""De-identification, pseudonyms and delivery packages: pure functions from files to files, no store.

- `profile`: the declarative rule set (keep, redact, cryptoHash, pseudonymize, generalize, replace,
  dateShift over FHIR paths and types); the shipped profiles `fdpg` (FDPG DIMP base) and `fts`
  (FTSnext-compatible, read from a DeidentiFHIR configuration: `hocon` reads its files);
- `keys`: a project's keys, derived from the site secret (new project, new keys and namespace);
- `engine`: one Bundle at a time, one walk per resource; every id and reference rewritten consistently,
  shared resources one pseudonym per project;
- `pseudonyms`: the site's pseudonym service with the MII Pseudonymization Interface operations;
- `gate`: the leak gate (no original id, identifier value, name, address line or exact birth date
  survives; every reference resolves inside the package);
- `folder`: an extraction job folder in, the de-identified folder with reports and verdict out;
- `package`: manifest (SHA-256 per file) and the sealed, chunked, encrypted package.
"""
