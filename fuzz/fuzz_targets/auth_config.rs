//! `DOCKER_AUTH_CONFIG` values and docker config files, as users write them: valid, truncated,
//! with a stray character, with fields of the wrong type. Parsing must not panic, and a secret
//! in the document (a password, its base64 `auth`, a token) never appears in what wharf prints
//! of it: the error, the problems it lists, the parsed config's `Debug`. The masker
//! (`secrets_in_auth_config`) must not panic either, and parsing the `WWW-Authenticate` answers
//! of a registry must not panic on any text.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;

const PASSWORD: &str = "Pw0rd-zq8XK";
const TOKEN: &str = "tok-7HqLm2Vr";

#[derive(Arbitrary, Debug)]
struct Input {
    entries: Vec<Entry>,
    store: Option<String>,
    /// Byte offsets and bytes to splice into the document (a user's slip).
    slips: Vec<(u16, Slip)>,
    cut: Option<u16>,
    legacy: bool,
    challenge: String,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    key: String,
    fields: Vec<Field>,
}

#[derive(Arbitrary, Debug)]
enum Field {
    Auth(Secret),
    Username(String),
    Password(Secret),
    IdentityToken(Secret),
    RegistryToken(Secret),
    Other(String, Secret),
    Number(String, i64),
}

#[derive(Arbitrary, Debug)]
enum Secret {
    /// base64 of `user:PASSWORD`, padded or not.
    Auth {
        user: String,
        padded: bool,
    },
    /// base64 of just PASSWORD (no colon).
    NoColon,
    Password,
    Token,
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Slip {
    Byte(u8),
    Quote,
    Brace,
    Comma,
    Newline,
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

fn secret(s: &Secret) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    match s {
        Secret::Auth { user, padded } => {
            let user = user_of(user);
            let encoded = b64.encode(format!("{user}:{PASSWORD}"));
            if *padded {
                encoded
            } else {
                encoded.trim_end_matches('=').to_string()
            }
        }
        Secret::NoColon => b64.encode(PASSWORD),
        Secret::Password => PASSWORD.to_string(),
        Secret::Token => TOKEN.to_string(),
        Secret::Any(s) => s.clone(),
    }
}

fuzz_target!(|input: Input| {
    let mut doc = String::from("{\"auths\": {");
    for (i, e) in input.entries.iter().take(6).enumerate() {
        if i > 0 {
            doc.push(',');
        }
        let key = key_of(e);
        doc.push_str(&json_string(&key));
        doc.push_str(": {");
        for (j, f) in e.fields.iter().take(6).enumerate() {
            if j > 0 {
                doc.push(',');
            }
            let (name, value) = match f {
                Field::Auth(s) => ("auth".to_string(), json_string(&secret(s))),
                Field::Username(u) => ("username".to_string(), json_string(u)),
                Field::Password(s) => ("password".to_string(), json_string(&secret(s))),
                Field::IdentityToken(s) => ("identitytoken".to_string(), json_string(&secret(s))),
                Field::RegistryToken(s) => ("registrytoken".to_string(), json_string(&secret(s))),
                Field::Other(n, s) => (n.clone(), json_string(&secret(s))),
                Field::Number(n, v) => (n.clone(), v.to_string()),
            };
            doc.push_str(&json_string(&name));
            doc.push(':');
            doc.push_str(&value);
        }
        doc.push('}');
    }
    doc.push('}');
    if let Some(store) = &input.store {
        doc.push_str(", \"credsStore\": ");
        doc.push_str(&json_string(store));
    }
    doc.push('}');
    let mut bytes = doc.into_bytes();
    for (at, slip) in input.slips.iter().take(3) {
        let at = usize::from(*at) % (bytes.len() + 1);
        let b = match slip {
            Slip::Byte(b) => *b,
            Slip::Quote => b'"',
            Slip::Brace => b'}',
            Slip::Comma => b',',
            Slip::Newline => b'\n',
        };
        bytes.insert(at, b);
    }
    if let Some(cut) = input.cut {
        bytes.truncate(usize::from(cut) % (bytes.len() + 1));
    }
    let doc = String::from_utf8_lossy(&bytes).into_owned();

    // What must never be printed: the password, its base64 forms, the token.
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forbidden = vec![
        PASSWORD.to_string(),
        TOKEN.to_string(),
        b64.encode(PASSWORD),
    ];
    for e in &input.entries {
        for f in &e.fields {
            if let Field::Auth(s @ Secret::Auth { .. })
            | Field::Password(s @ Secret::Auth { .. })
            | Field::IdentityToken(s @ Secret::Auth { .. })
            | Field::RegistryToken(s @ Secret::Auth { .. })
            | Field::Other(_, s @ Secret::Auth { .. }) = f
            {
                forbidden.push(secret(s));
            }
        }
    }
    let check = |what: &str, shown: &str| {
        for f in &forbidden {
            // A secret the document's own keys or names repeat is not the value leaking.
            if shown.contains(f.as_str()) && !in_names(&input, f) {
                panic!("{what} shows the secret {f:?}:\n{shown}\n--- document:\n{doc}");
            }
        }
    };
    let parsed = if input.legacy {
        wharf_oci::AuthConfig::parse_legacy(&doc)
    } else {
        wharf_oci::AuthConfig::parse(&doc)
    };
    match parsed {
        Ok(config) => {
            check("the parsed config's Debug", &format!("{config:?}"));
            for p in &config.problems {
                check("a problem", p);
            }
        }
        Err(e) => {
            check("the error", &e.to_string());
            check("the error's Debug", &format!("{e:?}"));
        }
    }
    let _ = wharf_oci::secrets_in_auth_config(&doc);
    let _ = wharf_oci::parse_www_authenticate(&input.challenge);
});

/// Whether `secret` is part of what the input wrote outside a secret's place (a key, a field
/// name, a user name, the helper's name, the value of a field that holds no secret): printing
/// that is printing the name, not the secret.
fn in_names(input: &Input, secret: &str) -> bool {
    const SECRET_FIELDS: [&str; 4] = ["auth", "password", "identitytoken", "registrytoken"];
    let names = input.entries.iter().flat_map(|e| {
        std::iter::once(key_of(e)).chain(e.fields.iter().flat_map(|f| match f {
            Field::Username(u) => vec![u.clone()],
            Field::Number(n, _) => vec![n.clone()],
            Field::Other(n, Secret::Any(v))
                if !SECRET_FIELDS.contains(&n.to_ascii_lowercase().as_str()) =>
            {
                vec![n.clone(), v.clone()]
            }
            Field::Other(n, _) => vec![n.clone()],
            // The user name in an `auth` value is printed as any user name is.
            Field::Auth(Secret::Auth { user, .. })
            | Field::Password(Secret::Auth { user, .. })
            | Field::IdentityToken(Secret::Auth { user, .. })
            | Field::RegistryToken(Secret::Auth { user, .. })
            | Field::Other(_, Secret::Auth { user, .. }) => vec![user_of(user)],
            _ => Vec::new(),
        }))
    });
    names.chain(input.store.clone()).any(|n| n.contains(secret))
}

/// The entry's key as written into the document.
fn key_of(e: &Entry) -> String {
    e.key.replace(':', "").chars().take(40).collect()
}

/// The user name as written into a base64 `user:password`.
fn user_of(user: &str) -> String {
    user.chars().filter(|c| *c != ':').take(20).collect()
}
