//! Pages of list answers, so that no answer grows past what a client accepts (tonic's
//! 4 MiB) however many keys, principals, approvals or signatures there are.

/// Items per page when the request does not say.
pub const DEFAULT_PAGE: usize = 500;
/// The most items one page holds.
pub const MAX_PAGE: usize = 1000;

/// The page size a request asks for, within bounds.
pub fn size(asked: u32) -> usize {
    match asked {
        0 => DEFAULT_PAGE,
        n => (n as usize).min(MAX_PAGE),
    }
}

/// The items (sorted by `key`) after `token`, at most `size` of them, and the token of
/// the next page (empty on the last).
pub fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    token: &str,
    size: usize,
) -> (Vec<T>, String) {
    let mut out: Vec<T> = items
        .into_iter()
        .filter(|i| token.is_empty() || key(i).as_str() > token)
        .take(size + 1)
        .collect();
    let next = if out.len() > size {
        out.truncate(size);
        out.last().map(&key).unwrap_or_default()
    } else {
        String::new()
    };
    (out, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_everything_once() {
        let items: Vec<String> = (0..7).map(|i| format!("k{i}")).collect();
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let (p, next) = page(items.clone(), |s| s.clone(), &token, 3);
            seen.extend(p);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, items);
        assert_eq!(size(0), DEFAULT_PAGE);
        assert_eq!(size(5000), MAX_PAGE);
    }
}
