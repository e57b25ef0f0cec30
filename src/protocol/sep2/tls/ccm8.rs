//! TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (0xC0AE) for rustls.
//!
//! IEEE 2030.5 makes this suite mandatory (it is the only one a conforming
//! client has to offer), but rustls ships no CCM suite at all and neither
//! *ring* nor aws-lc-rs expose AES-CCM. rustls does let a `CryptoProvider`
//! bring its own TLS 1.2 suites, so this module supplies the record
//! protection (RFC 6655 as used by RFC 7251) with the RustCrypto `ccm` and
//! `aes` crates, and borrows everything else (SHA-256, the TLS 1.2 PRF,
//! ECDHE, ECDSA) from rustls's *ring* provider, exactly as its own
//! TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 does.
//!
//! The record layout (RFC 6655 section 3, RFC 5246 section 6.2.3.3):
//!
//! ```text
//! key       16 bytes           client/server_write_key from the key block
//! salt       4 bytes           client/server_write_IV from the key block
//! nonce     salt || explicit   12 bytes, so CCM's length field L is 3
//! record    explicit(8) || ciphertext || tag(8)
//! AAD       seq_num(8) || type(1) || version(2) || plaintext length(2)
//! ```
//!
//! The explicit part only has to be unique per key. Like rustls's GCM
//! suites we take 8 more bytes from the key block and XOR the record
//! sequence number into them, which is unique per record, does not reveal
//! the sequence number on the wire, and needs no state of our own. The
//! receiver simply reads the explicit nonce from the record, so this choice
//! does not affect interoperability.

use std::sync::LazyLock;

use aes::Aes128;
use ccm::Ccm;
use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U8, U12};
use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, KeyBlockShape, MessageDecrypter,
    MessageEncrypter, NONCE_LEN, Nonce, OutboundOpaqueMessage, OutboundPlainMessage,
    PrefixedPayload, Tls12AeadAlgorithm, UnsupportedOperationError, make_tls12_aad,
};
use rustls::crypto::{CipherSuiteCommon, KeyExchangeAlgorithm};
use rustls::{
    CipherSuite, ConnectionTrafficSecrets, Error, SignatureScheme, SupportedCipherSuite,
    Tls12CipherSuite,
};

/// AES-128 in CCM mode with an 8-byte tag and a 12-byte nonce.
type Aes128Ccm8 = Ccm<Aes128, U8, U12>;

/// AES-128 key length.
const KEY_LEN: usize = 16;
/// Implicit part of the nonce (the "salt"), taken from the key block.
const SALT_LEN: usize = 4;
/// Explicit part of the nonce, sent in front of every record.
const EXPLICIT_NONCE_LEN: usize = 8;
/// CCM_8 means an 8-byte authentication tag.
const TAG_LEN: usize = 8;
/// Bytes a protected record carries besides the ciphertext.
const OVERHEAD: usize = EXPLICIT_NONCE_LEN + TAG_LEN;
/// Largest plaintext a TLS record may carry (RFC 5246 section 6.2.1).
const MAX_FRAGMENT_LEN: usize = 1 << 14;

/// Records to protect under one key before rustls must stop using it.
///
/// CCM calls the block cipher twice per 16-byte block (CBC-MAC and CTR).
/// For full 2^14-byte records that is about 2^11 AES calls per record, so
/// keeping the advantage against AES as a PRP below 2^-60 (the target rustls
/// uses for its GCM suites, see draft-irtf-cfrg-aead-limits) allows
/// 2^(64 - 30 - 11) = 2^23 records. rustls closes a TLS 1.2 connection
/// before reaching this. CCM's integrity limit needs no setting for TLS
/// over TCP: the first failed decryption ends the connection.
const CONFIDENTIALITY_LIMIT: u64 = 1 << 23;

/// Signature schemes usable with this suite: IEEE 2030.5 certificates are
/// ECDSA P-256 with SHA-256 and nothing else.
static ECDSA_P256_ONLY: &[SignatureScheme] = &[SignatureScheme::ECDSA_NISTP256_SHA256];

/// The suite definition. The hash and PRF of the *ring* provider are not
/// exported as items, so they are taken from *ring*'s
/// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, which uses the same ones
/// (SHA-256, the TLS 1.2 PRF with HMAC-SHA256); that needs a lazy static.
static SUITE: LazyLock<Tls12CipherSuite> = LazyLock::new(|| {
    let SupportedCipherSuite::Tls12(gcm) =
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    else {
        unreachable!("the *ring* GCM suite named TLS_ECDHE_... is a TLS 1.2 suite")
    };
    Tls12CipherSuite {
        common: CipherSuiteCommon {
            suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
            hash_provider: gcm.common.hash_provider,
            confidentiality_limit: CONFIDENTIALITY_LIMIT,
        },
        prf_provider: gcm.prf_provider,
        kx: KeyExchangeAlgorithm::ECDHE,
        sign: ECDSA_P256_ONLY,
        aead_alg: &Ccm8Algorithm,
    }
});

/// The TLS 1.2 cipher suite TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (0xC0AE,
/// OpenSSL name `ECDHE-ECDSA-AES128-CCM8`), mandatory in IEEE 2030.5.
///
/// Put it in a [`rustls::crypto::CryptoProvider`]'s `cipher_suites` like any
/// built-in suite; [`super::crypto_provider`] already does.
pub fn tls_ecdhe_ecdsa_with_aes_128_ccm_8() -> SupportedCipherSuite {
    SupportedCipherSuite::Tls12(&SUITE)
}

/// Builds the record encrypter and decrypter for the suite.
struct Ccm8Algorithm;

impl Tls12AeadAlgorithm for Ccm8Algorithm {
    fn encrypter(&self, key: AeadKey, iv: &[u8], extra: &[u8]) -> Box<dyn MessageEncrypter> {
        Box::new(Ccm8Encrypter {
            cipher: new_cipher(&key),
            nonce_base: nonce_base(iv, extra),
        })
    }

    fn decrypter(&self, key: AeadKey, iv: &[u8]) -> Box<dyn MessageDecrypter> {
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(iv);
        Box::new(Ccm8Decrypter {
            cipher: new_cipher(&key),
            salt,
        })
    }

    fn key_block_shape(&self) -> KeyBlockShape {
        KeyBlockShape {
            enc_key_len: KEY_LEN,
            fixed_iv_len: SALT_LEN,
            explicit_nonce_len: EXPLICIT_NONCE_LEN,
        }
    }

    fn extract_keys(
        &self,
        _key: AeadKey,
        _iv: &[u8],
        _explicit: &[u8],
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        // Secret extraction only serves kernel TLS offload, and
        // `ConnectionTrafficSecrets` has no CCM variant to put them in.
        Err(UnsupportedOperationError)
    }
}

/// Creates the block cipher from the key block's write key.
fn new_cipher(key: &AeadKey) -> Aes128Ccm8 {
    // rustls sizes the key from `KeyBlockShape::enc_key_len`, so a length
    // mismatch is a bug in this module rather than a runtime condition.
    Aes128Ccm8::new_from_slice(key.as_ref()).expect("rustls passes a 16-byte AES-128 key")
}

/// The write nonce before the sequence number is mixed in: salt || extra.
fn nonce_base(salt: &[u8], extra: &[u8]) -> Iv {
    let mut base = [0u8; NONCE_LEN];
    base[..SALT_LEN].copy_from_slice(salt);
    base[SALT_LEN..].copy_from_slice(extra);
    Iv::new(base)
}

/// Protects outgoing records.
///
/// Key hygiene: rustls wipes the `AeadKey` it hands us when it drops it, and
/// the AES key schedule inside `cipher` is wiped on drop by the `aes`
/// crate's `zeroize` feature. The nonce parts are not secret (the explicit
/// half travels in every record), so like rustls's own GCM suites we do not
/// wipe them.
struct Ccm8Encrypter {
    cipher: Aes128Ccm8,
    nonce_base: Iv,
}

impl MessageEncrypter for Ccm8Encrypter {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let plain_len = msg.payload.len();
        let mut payload = PrefixedPayload::with_capacity(self.encrypted_payload_len(plain_len));

        // salt || (extra XOR seq): the last 8 bytes are the explicit nonce.
        let nonce = Nonce::new(&self.nonce_base, seq).0;
        let aad = make_tls12_aad(seq, msg.typ, msg.version, plain_len);

        payload.extend_from_slice(&nonce[SALT_LEN..]);
        payload.extend_from_chunks(&msg.payload);
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &nonce.into(),
                &aad,
                (&mut payload.as_mut()[EXPLICIT_NONCE_LEN..]).into(),
            )
            .map_err(|_| Error::EncryptError)?;
        payload.extend_from_slice(&tag);

        Ok(OutboundOpaqueMessage::new(msg.typ, msg.version, payload))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + OVERHEAD
    }
}

/// Removes the protection from incoming records.
struct Ccm8Decrypter {
    cipher: Aes128Ccm8,
    salt: [u8; SALT_LEN],
}

impl MessageDecrypter for Ccm8Decrypter {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let record_len = msg.payload.len();
        if record_len < OVERHEAD {
            return Err(Error::DecryptError);
        }
        let plain_len = record_len - OVERHEAD;

        let mut nonce = [0u8; NONCE_LEN];
        nonce[..SALT_LEN].copy_from_slice(&self.salt);
        nonce[SALT_LEN..].copy_from_slice(&msg.payload[..EXPLICIT_NONCE_LEN]);
        let aad = make_tls12_aad(seq, msg.typ, msg.version, plain_len);

        let (body, tag) = msg.payload[EXPLICIT_NONCE_LEN..].split_at_mut(plain_len);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| Error::DecryptError)?;
        // On failure `ccm` wipes the partially decrypted body.
        self.cipher
            .decrypt_inout_detached(&nonce.into(), &aad, body.into(), &tag.into())
            .map_err(|_| Error::DecryptError)?;

        // Checked after authentication, as RFC 5246 orders it: a forged
        // oversized record is a decryption failure, not an oversize one.
        if plain_len > MAX_FRAGMENT_LEN {
            return Err(Error::PeerSentOversizedRecord);
        }

        // The plaintext sits behind the explicit nonce; hand rustls just it.
        Ok(msg.into_plain_message_range(EXPLICIT_NONCE_LEN..EXPLICIT_NONCE_LEN + plain_len))
    }
}

#[cfg(test)]
mod tests {
    use rustls::crypto::cipher::OutboundChunks;
    use rustls::{ContentType, ProtocolVersion};

    use super::*;

    const KEY: [u8; 16] = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f,
    ];
    const SALT: [u8; 4] = [0xa0, 0xa1, 0xa2, 0xa3];
    const EXTRA: [u8; 8] = [0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7];
    const PLAINTEXT: &[u8] = b"GET /dcap HTTP/1.1\r\n";

    /// Record payload for `PLAINTEXT` as application data, sequence number
    /// 1, with the key, salt and extra bytes above: explicit nonce
    /// (EXTRA XOR 1) || ciphertext || tag. Computed independently with
    /// OpenSSL's AES-CCM (through Python's `cryptography` package, tag
    /// length 8, nonce SALT || explicit, AAD as in RFC 5246).
    const EXPECTED_RECORD: &str = "b0b1b2b3b4b5b6b6\
         b45fdddb2cb55763b65b5ab6ac8c6fb1773145c1\
         8b415bb791d52d99";

    // rustls hands `Tls12AeadAlgorithm` a key trimmed to `enc_key_len`, but
    // outside rustls an `AeadKey` can only be made 32 bytes long. So the
    // unit tests build the encrypter and decrypter directly; the integration
    // tests exercise the algorithm through real handshakes.
    fn encrypter() -> Ccm8Encrypter {
        Ccm8Encrypter {
            cipher: Aes128Ccm8::new_from_slice(&KEY).expect("key"),
            nonce_base: nonce_base(&SALT, &EXTRA),
        }
    }

    fn decrypter() -> Ccm8Decrypter {
        Ccm8Decrypter {
            cipher: Aes128Ccm8::new_from_slice(&KEY).expect("key"),
            salt: SALT,
        }
    }

    fn seal(enc: &mut Ccm8Encrypter, plaintext: &[u8], seq: u64) -> Vec<u8> {
        let msg = OutboundPlainMessage {
            typ: ContentType::ApplicationData,
            version: ProtocolVersion::TLSv1_2,
            payload: OutboundChunks::Single(plaintext),
        };
        let out = enc.encrypt(msg, seq).expect("encrypt");
        assert_eq!(out.payload.as_ref().len(), plaintext.len() + OVERHEAD);
        out.payload.as_ref().to_vec()
    }

    fn open(dec: &mut Ccm8Decrypter, record: &mut [u8], seq: u64) -> Result<Vec<u8>, Error> {
        let msg = InboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            record,
        );
        dec.decrypt(msg, seq).map(|plain| plain.payload.to_vec())
    }

    #[test]
    fn matches_independent_known_answer() {
        let record = seal(&mut encrypter(), PLAINTEXT, 1);
        assert_eq!(hex::encode(&record), EXPECTED_RECORD);

        let mut record = hex::decode(EXPECTED_RECORD).expect("hex");
        assert_eq!(
            open(&mut decrypter(), &mut record, 1).expect("decrypt"),
            PLAINTEXT
        );
    }

    #[test]
    fn algorithm_describes_rfc_6655_key_block() {
        let shape = Ccm8Algorithm.key_block_shape();
        assert_eq!(
            (
                shape.enc_key_len,
                shape.fixed_iv_len,
                shape.explicit_nonce_len
            ),
            (16, 4, 8)
        );
        // No kernel TLS offload for CCM: refuse rather than mislabel keys.
        let key = AeadKey::from([0u8; 32]);
        assert!(Ccm8Algorithm.extract_keys(key, &SALT, &EXTRA).is_err());
    }

    #[test]
    fn explicit_nonce_differs_per_record() {
        let mut enc = encrypter();
        let a = seal(&mut enc, PLAINTEXT, 7);
        let b = seal(&mut enc, PLAINTEXT, 8);
        assert_ne!(a[..EXPLICIT_NONCE_LEN], b[..EXPLICIT_NONCE_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_tampering_wrong_sequence_and_short_records() {
        let mut enc = encrypter();
        let mut dec = decrypter();
        let record = seal(&mut enc, PLAINTEXT, 5);

        // Every byte is covered: explicit nonce, ciphertext and tag.
        for i in [0, EXPLICIT_NONCE_LEN, record.len() - 1] {
            let mut bad = record.clone();
            bad[i] ^= 0x01;
            assert_eq!(open(&mut dec, &mut bad, 5), Err(Error::DecryptError));
        }
        // The sequence number is authenticated through the AAD.
        assert_eq!(
            open(&mut dec, &mut record.clone(), 6),
            Err(Error::DecryptError)
        );
        // Too short to hold a nonce and a tag.
        assert_eq!(
            open(&mut dec, &mut [0u8; OVERHEAD - 1], 0),
            Err(Error::DecryptError)
        );
        // An empty plaintext is legal (TLS allows empty application data).
        let mut empty = seal(&mut enc, b"", 9);
        assert_eq!(open(&mut dec, &mut empty, 9), Ok(Vec::new()));
        assert_eq!(
            open(&mut dec, &mut record.clone(), 5),
            Ok(PLAINTEXT.to_vec())
        );
    }

    #[test]
    fn rejects_oversized_plaintext_after_authentication() {
        let mut enc = encrypter();
        let big = vec![0x5a; MAX_FRAGMENT_LEN + 1];
        let mut record = seal(&mut enc, &big, 3);
        assert_eq!(
            open(&mut decrypter(), &mut record, 3),
            Err(Error::PeerSentOversizedRecord)
        );
        let max = vec![0x5a; MAX_FRAGMENT_LEN];
        let mut record = seal(&mut enc, &max, 4);
        assert_eq!(open(&mut decrypter(), &mut record, 4), Ok(max));
    }

    #[test]
    fn suite_is_registered_under_its_iana_code() {
        let suite = tls_ecdhe_ecdsa_with_aes_128_ccm_8();
        assert_eq!(u16::from(suite.suite()), 0xC0AE);
        assert_eq!(suite.version(), &rustls::version::TLS12);
        let SupportedCipherSuite::Tls12(tls12) = suite else {
            panic!("not TLS 1.2")
        };
        assert_eq!(tls12.common.confidentiality_limit, 1 << 23);
        assert_eq!(tls12.sign, &[SignatureScheme::ECDSA_NISTP256_SHA256]);
    }
}
