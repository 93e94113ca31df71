//! The default event name: a type name in snake_case.

/// Converts a Rust type name to snake_case.
///
/// Words break where a lowercase letter or a digit is followed by an uppercase letter, and
/// before the last capital of an acronym that runs into a word (`HTTPRequest` → `http_request`).
/// Digits stay with the word before them (`OrderV2Placed` → `order_v2_placed`). Underscores
/// already in the name are kept as single separators.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    let separate = |out: &mut String| {
        if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    };
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            separate(&mut out);
            continue;
        }
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_numeric() || (prev.is_uppercase() && next_is_lower) {
                separate(&mut out);
            }
        }
        out.extend(c.to_lowercase());
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn plain_words() {
        assert_eq!(snake_case("UserCreated"), "user_created");
        assert_eq!(snake_case("Ping"), "ping");
        assert_eq!(snake_case("A"), "a");
        assert_eq!(
            snake_case("OrderItemShippedToCustomer"),
            "order_item_shipped_to_customer"
        );
    }

    #[test]
    fn acronyms() {
        assert_eq!(snake_case("HTTPRequestFailed"), "http_request_failed");
        assert_eq!(snake_case("IOError"), "io_error");
        assert_eq!(snake_case("UserIDChanged"), "user_id_changed");
        assert_eq!(snake_case("ApiKeyRotatedTTL"), "api_key_rotated_ttl");
        assert_eq!(snake_case("HTTP"), "http");
        assert_eq!(snake_case("UserHTTP"), "user_http");
    }

    #[test]
    fn digits_stay_with_the_word_before() {
        assert_eq!(snake_case("OrderV2Placed"), "order_v2_placed");
        assert_eq!(snake_case("UserCreatedV2"), "user_created_v2");
        assert_eq!(snake_case("S3ObjectUploaded"), "s3_object_uploaded");
        assert_eq!(snake_case("Base64Decoded"), "base64_decoded");
        assert_eq!(snake_case("Http2Upgraded"), "http2_upgraded");
        assert_eq!(snake_case("Md5sum"), "md5sum");
    }

    #[test]
    fn existing_underscores() {
        assert_eq!(snake_case("user_created"), "user_created");
        assert_eq!(snake_case("User_Created"), "user_created");
        assert_eq!(snake_case("_Private__Event_"), "private_event");
    }

    #[test]
    fn non_ascii() {
        assert_eq!(snake_case("ÉvénementCréé"), "événement_créé");
    }
}
