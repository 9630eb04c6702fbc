#!/usr/bin/env python3
"""Writes pyjwt_vectors.json: JWTs minted by an independent library, PyJWT
(2.6.0 with cryptography 38.0.4 when this file was generated: Debian 12's
python3-jwt), for the engine's unit tests and tests/e2e/test_jwt_edges.py.

  /usr/bin/python3 filter/engine/src/canary/testdata/make_pyjwt_vectors.py

No token has an `exp` (they stay valid); none has a `kid`, so a verifier must
try every key of the token's algorithm (key rotation). The RSA private keys
are thrown away; only the public PEMs are kept.
"""

import base64
import hashlib
import hmac
import json
from pathlib import Path

import cryptography
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

CLAIMS = {"iss": "https://auth.example.com", "aud": "hello-world", "sub": "user-rotated",
          "role": "beta-tester", "iat": 1700000000}
# RFC 7515 Appendix A.1's HMAC key (64 raw bytes), as the RFC writes it (base64url).
RFC7515_A1_KEY = ("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
# RFC 7515 Appendix A.1's example JWS (exp 1300819380), copied from the RFC.
RFC7515_A1_TOKEN = ("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
                    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
                    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def main() -> None:
    hs = ["rotation-old-hs256-secret-0123456789abcdef", "rotation-new-hs256-secret-0123456789abcdef"]
    rsa_keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]
    pems = [k.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
            for k in rsa_keys]
    binary = unb64url(RFC7515_A1_KEY)
    # Hand-made (PyJWT cannot write a header that is not an object): a JSON array
    # header, signed correctly with the first HMAC secret.
    si = b64url(json.dumps(["HS256"]).encode()) + "." + b64url(json.dumps(CLAIMS).encode())
    array_header = si + "." + b64url(hmac.new(hs[0].encode(), si.encode(), hashlib.sha256).digest())
    out = {
        "generator": f"PyJWT {jwt.__version__}, cryptography {cryptography.__version__} "
                     "(filter/engine/src/canary/testdata/make_pyjwt_vectors.py)",
        "claims": CLAIMS,
        "hs256_secrets": hs,
        "rs256_pems": pems,
        "binary_secret_base64": base64.b64encode(binary).decode(),
        "tokens": {
            "hs256_first": jwt.encode(CLAIMS, hs[0], algorithm="HS256"),
            "hs256_second": jwt.encode(CLAIMS, hs[1], algorithm="HS256"),
            "rs256_first": jwt.encode(CLAIMS, rsa_keys[0], algorithm="RS256"),
            "rs256_second": jwt.encode(CLAIMS, rsa_keys[1], algorithm="RS256"),
            "hs256_binary": jwt.encode(CLAIMS, binary, algorithm="HS256"),
            # PyJWS signs any payload bytes: a JSON array payload, correctly signed.
            "array_payload": jwt.api_jws.encode(json.dumps(["beta-tester"]).encode(), hs[0],
                                                algorithm="HS256"),
            "array_header": array_header,
        },
        "rfc7515_a1": {"key_base64url": RFC7515_A1_KEY, "token": RFC7515_A1_TOKEN, "exp": 1300819380},
    }
    # The RFC's token verifies with the RFC's key (checked here with PyJWT too).
    assert jwt.decode(RFC7515_A1_TOKEN, binary, algorithms=["HS256"],
                      options={"verify_exp": False})["iss"] == "joe"
    path = Path(__file__).with_name("pyjwt_vectors.json")
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
