"""The gateway's on-store encryption format (version 1), specified in docs/FORMAT.md.

- `sizes`: plaintext ↔ stored sizes and the segments covering a range (pure arithmetic).
- `envelope`: the 68-byte header, the HKDF key schedule with key commitment, the object metadata.
- `segments`: sealing and opening batches of AES-256-GCM segments.
- `fetchplan`: which stored bytes a ranged GET asks the store for.
- `reading`: what a reader opens (runs of segments under one key) and how it finds a part table.
- `bucketkey`, `partner`: wrapped-key schemes `kms-bucket-key` (§16) and `rsa-oaep-sha256` (§17).
- `signedshare`: the statement a signed share signs, the share manifest, and verifying it (§17.5–17.7).

Pure code: no I/O, no event loop, no KMS. Callers bring the plaintext data key and run the batch functions in a
thread pool.
"""
