use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

const NOW: i64 = 1_800_000_000;

fn service(algorithm: TokenAlgorithm) -> TokenService {
    TokenService::new(KeySet::ephemeral(algorithm, NOW).unwrap(), 30, 5)
}

fn request() -> TokenRequest<'static> {
    TokenRequest {
        issuer: "account",
        audience: "shop",
        challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        return_to: "/cart",
    }
}

/// Re-signs arbitrary header and claims JSON with the service's signing key.
fn forge(service: &TokenService, header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let key = service.keys().signing();
    let message = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &key.encoding,
        jwt_algorithm(key.algorithm),
    )
    .unwrap();
    format!("{message}.{signature}")
}

fn parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    let mut it = token.split('.');
    let h = serde_json::from_slice(&B64.decode(it.next().unwrap()).unwrap()).unwrap();
    let c = serde_json::from_slice(&B64.decode(it.next().unwrap()).unwrap()).unwrap();
    (h, c)
}

#[test]
fn round_trip_for_both_algorithms() {
    for algorithm in [TokenAlgorithm::EdDSA, TokenAlgorithm::HS256] {
        let service = service(algorithm);
        let (token, claims) = service.issue(&request(), NOW).unwrap();
        let (header, _) = parts(&token);
        assert_eq!(header["typ"], "sb+jwt");
        assert_eq!(header["alg"], algorithm.to_string());
        assert_eq!(header["kid"], service.keys().signing().kid.as_str());
        assert_eq!(claims.exp - claims.iat, 30);
        assert_eq!(service.verify(&token, "shop", NOW + 10).unwrap(), claims);
    }
}

#[test]
fn claims_are_exactly_the_contract() {
    let service = service(TokenAlgorithm::EdDSA);
    let (token, _) = service.issue(&request(), NOW).unwrap();
    let (_, claims) = parts(&token);
    let mut names: Vec<_> = claims.as_object().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        ["aud", "cch", "exp", "iat", "iss", "jti", "nbf", "rt"]
    );
}

#[test]
fn time_limits_with_leeway() {
    let service = service(TokenAlgorithm::EdDSA);
    let (token, _) = service.issue(&request(), NOW).unwrap();
    assert!(
        service.verify(&token, "shop", NOW + 35).is_ok(),
        "within leeway"
    );
    assert_eq!(
        service.verify(&token, "shop", NOW + 36),
        Err(TokenError::Expired)
    );
    assert!(
        service.verify(&token, "shop", NOW - 5).is_ok(),
        "skew within leeway"
    );
    assert_eq!(
        service.verify(&token, "shop", NOW - 6),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        service.verify(&token, "checkout", NOW),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn alg_none_and_foreign_algorithms_are_refused() {
    let service = service(TokenAlgorithm::EdDSA);
    let (token, _) = service.issue(&request(), NOW).unwrap();
    let (mut header, claims) = parts(&token);
    for alg in ["none", "None", "NONE", "HS256", "RS256", "ES256"] {
        header["alg"] = serde_json::Value::String(alg.to_owned());
        let unsigned = format!(
            "{}.{}.",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        assert_eq!(
            service.verify(&unsigned, "shop", NOW),
            Err(TokenError::BadAlgorithm),
            "{alg}"
        );
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let service = service(TokenAlgorithm::EdDSA);
    let (token, _) = service.issue(&request(), NOW).unwrap();
    let (mut header, claims) = parts(&token);
    header["alg"] = "HS256".into();
    let public_x = service.keys().signing().public_jwk.as_ref().unwrap()["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let raw_public = B64.decode(&public_x).unwrap();
    let message = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    // Both spellings of the public key an attacker could use as an HMAC secret.
    for secret in [public_x.as_bytes(), raw_public.as_slice()] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let sig = B64.encode(ring::hmac::sign(&key, message.as_bytes()));
        assert_eq!(
            service.verify(&format!("{message}.{sig}"), "shop", NOW),
            Err(TokenError::BadAlgorithm)
        );
    }
}

#[test]
fn every_single_bit_flip_fails() {
    let service = service(TokenAlgorithm::HS256);
    let (token, _) = service.issue(&request(), NOW).unwrap();
    let bytes = token.as_bytes();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x20] {
            let mut flipped = bytes.to_vec();
            flipped[i] ^= bit;
            let Ok(text) = String::from_utf8(flipped) else {
                continue;
            };
            if text == token {
                continue;
            }
            assert!(
                service.verify(&text, "shop", NOW).is_err(),
                "flip at {i} accepted"
            );
        }
    }
}

#[test]
fn signature_tampering_is_a_bad_signature() {
    let service = service(TokenAlgorithm::EdDSA);
    let (token, _) = service.issue(&request(), NOW).unwrap();
    let (header, mut claims) = parts(&token);
    claims["aud"] = "checkout".into();
    let sig = token.rsplit('.').next().unwrap();
    let tampered = format!(
        "{}.{}.{sig}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    assert_eq!(
        service.verify(&tampered, "checkout", NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn missing_or_mistyped_claims_are_malformed() {
    let service = service(TokenAlgorithm::EdDSA);
    let (token, _) = service.issue(&request(), NOW).unwrap();
    let (header, claims) = parts(&token);
    for name in ["iss", "aud", "exp", "nbf", "iat", "jti", "cch", "rt"] {
        let mut missing = claims.clone();
        missing.as_object_mut().unwrap().remove(name);
        assert_eq!(
            service.verify(&forge(&service, &header, &missing), "shop", NOW),
            Err(TokenError::Malformed),
            "missing {name}"
        );
        let mut mistyped = claims.clone();
        mistyped[name] = if claims[name].is_string() {
            42.into()
        } else {
            "42".into()
        };
        assert_eq!(
            service.verify(&forge(&service, &header, &mistyped), "shop", NOW),
            Err(TokenError::Malformed),
            "mistyped {name}"
        );
    }
    let mut long_lived = claims.clone();
    long_lived["exp"] = (NOW + 121).into();
    assert_eq!(
        service.verify(&forge(&service, &header, &long_lived), "shop", NOW),
        Err(TokenError::Malformed)
    );
    let mut extra = claims.clone();
    extra["sid"] = "x".into();
    assert_eq!(
        service.verify(&forge(&service, &header, &extra), "shop", NOW),
        Err(TokenError::Malformed)
    );
}

#[test]
fn header_problems() {
    let service = service(TokenAlgorithm::EdDSA);
    let (token, _) = service.issue(&request(), NOW).unwrap();
    let (header, claims) = parts(&token);
    let mut wrong_typ = header.clone();
    wrong_typ["typ"] = "JWT".into();
    assert_eq!(
        service.verify(&forge(&service, &wrong_typ, &claims), "shop", NOW),
        Err(TokenError::Malformed)
    );
    let mut unknown_kid = header.clone();
    unknown_kid["kid"] = "nope".into();
    assert_eq!(
        service.verify(&forge(&service, &unknown_kid, &claims), "shop", NOW),
        Err(TokenError::UnknownKey)
    );
    let mut no_kid = header.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    assert_eq!(
        service.verify(&forge(&service, &no_kid, &claims), "shop", NOW),
        Err(TokenError::UnknownKey)
    );
    let mut embedded = header.clone();
    embedded["jku"] = "https://evil.example/jwks".into();
    embedded["jwk"] = serde_json::json!({"kty": "oct", "k": "AAAA"});
    embedded["x5u"] = "https://evil.example/cert".into();
    embedded["x5c"] = serde_json::json!(["MIIB"]);
    assert!(
        service
            .verify(&forge(&service, &embedded, &claims), "shop", NOW)
            .is_ok(),
        "jku/jwk are ignored, not trusted"
    );
}

#[test]
fn shapes_that_are_not_tokens() {
    let service = service(TokenAlgorithm::EdDSA);
    let (token, _) = service.issue(&request(), NOW).unwrap();
    let mut segments = token.split('.');
    let two = format!("{}.{}", segments.next().unwrap(), segments.next().unwrap());
    for bad in [
        String::new(),
        "abc".to_owned(),
        two,
        format!("{token}.x"),
        "a".repeat(1 << 20),
        "..".to_owned(),
        "€.€.€".to_owned(),
    ] {
        assert_eq!(
            service.verify(&bad, "shop", NOW),
            Err(TokenError::Malformed),
            "{:.40}",
            bad
        );
    }
}

#[test]
fn another_key_set_cannot_verify() {
    let ours = service(TokenAlgorithm::EdDSA);
    let theirs = service(TokenAlgorithm::EdDSA);
    let (token, _) = theirs.issue(&request(), NOW).unwrap();
    assert_eq!(
        ours.verify(&token, "shop", NOW),
        Err(TokenError::UnknownKey)
    );
}
