"""Commands that need no running gateway, only the AWS SDK's default credentials (docs/KEYS.md):

- `decrypt`: an object's plaintext from its stored ciphertext and metadata (a file, or straight from the store);
- `secrets`: `wrap` / `unwrap` of small secrets with KMS Encrypt / Decrypt;
- `datakey`: which wrapped copy of an object's data key to use, and how to unwrap it (KMS, or a partner's key);
- `share`: `share` (a partner's RSA copy of objects' data keys, optionally signed) and `export-signing-key`;
- `verify`: a signed share checked by the partner before anything is decrypted;
- `keyfiles`: the PEM key files and share manifests those read and write;
- `sources`: where a stored object comes from (a file and its head-object JSON, or the store);
- `aws`: the synchronous boto3 clients these commands use, and their errors in the gateway's error tree;
- `exits`: the documented exit codes.

All cryptography is the format core's (gateway.format); these modules only move bytes.
"""
