//! Core lists in the `taskset -c` style: `0-3`, `0,2,4-7`.

/// A core list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad core list {0:?}: expected numbers and ranges like 0-3,5")]
pub struct BadCoreList(pub String);

/// The cores of a list, in ascending order without duplicates.
pub fn parse_core_list(list: &str) -> Result<Vec<usize>, BadCoreList> {
    let bad = || BadCoreList(list.to_owned());
    let mut cores = Vec::new();
    for part in list.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let n: usize = part.parse().map_err(|_| bad())?;
                (n, n)
            }
        };
        if first > last || last >= 4096 {
            return Err(bad());
        }
        cores.extend(first..=last);
    }
    cores.sort_unstable();
    cores.dedup();
    Ok(cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(parse_core_list("0-3"), Ok(vec![0, 1, 2, 3]));
        assert_eq!(parse_core_list("5, 0,2-3,2"), Ok(vec![0, 2, 3, 5]));
        for bad in ["", "a", "3-1", "1-", "-1", "1,,2", "99999"] {
            assert!(parse_core_list(bad).is_err(), "{bad}");
        }
    }
}
