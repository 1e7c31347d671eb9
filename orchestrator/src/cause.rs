//! An error and its causes on one line, for start-up messages and logs:
//! connection errors keep the reason a step down their source chain (a
//! TLS failure reads `… invalid peer certificate: UnknownIssuer`). A cause
//! whose text the line already holds is left out.

/// `error: cause: cause…`
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn causes_are_joined_once() {
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let outer = anyhow::Error::new(inner).context("cannot connect");
        let line = super::chain(outer.as_ref());
        assert_eq!(
            line,
            "cannot connect: invalid peer certificate: UnknownIssuer"
        );
    }
}
