//! `stratum.signatures`: byte strings looked for anywhere in what the
//! Stratum reader reads of a socket's stream, compiled into the automaton
//! the kernel steps one byte at a time (`mg_sig_byte` in
//! `bpf/include/stratum_reader.h`).
//!
//! The automaton is Aho and Corasick's, made deterministic: every state has
//! a step for every byte, so the kernel makes one map lookup per byte and
//! never follows failure links (a loop the verifier would have to walk). A
//! signature split across two sends is found: the state is kept with the
//! socket's reader. Only the steps that lead somewhere other than the start
//! are stored; a byte with no stored step goes back to the start.

use std::collections::VecDeque;

/// The start state (0 tells the kernel a policy has no signatures).
pub const START: u16 = 1;

/// One stored step of the automaton.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The state the step leaves.
    pub state: u16,
    /// The byte read.
    pub byte: u8,
    /// The state it reaches.
    pub next: u16,
    /// 1 + the index of a signature that ends at `next` (the one spelled
    /// by the whole path to `next` before one that is a suffix of it), or 0.
    pub found: u16,
}

/// Why signatures cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignaturesError {
    /// A signature with no bytes (it would match everywhere).
    Empty {
        /// Its index.
        index: usize,
    },
    /// More signatures than an event can name.
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// More states than the kernel's state numbers hold.
    TooLong {
        /// The states needed.
        states: usize,
    },
}

impl std::fmt::Display for SignaturesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignaturesError::Empty { index } => write!(f, "signature {index} is empty"),
            SignaturesError::TooMany { count } => write!(
                f,
                "{count} signatures; at most {MAX_SIGNATURES} per profile (events number them in a byte)"
            ),
            SignaturesError::TooLong { states } => write!(
                f,
                "the signatures need {states} automaton states; at most {}",
                u16::MAX - 1
            ),
        }
    }
}

/// Signatures one profile may list (an event names one by a byte).
pub const MAX_SIGNATURES: usize = 255;

/// The steps of the automaton that finds any of `signatures` (distinct,
/// non-empty) in a byte stream. State numbers start at [`START`].
pub fn steps(signatures: &[&[u8]]) -> Result<Vec<Step>, SignaturesError> {
    if signatures.len() > MAX_SIGNATURES {
        return Err(SignaturesError::TooMany {
            count: signatures.len(),
        });
    }
    if let Some(index) = signatures.iter().position(|s| s.is_empty()) {
        return Err(SignaturesError::Empty { index });
    }
    // The trie: node 0 is the start; `goto[n][b]` is 0 where absent (no
    // edge leads back to the start).
    let mut goto: Vec<[u32; 256]> = vec![[0; 256]];
    let mut found: Vec<u16> = vec![0];
    for (i, sig) in signatures.iter().enumerate() {
        let mut node = 0usize;
        for &b in *sig {
            let next = goto[node][b as usize];
            node = if next == 0 {
                goto.push([0; 256]);
                found.push(0);
                let n = goto.len() - 1;
                goto[node][b as usize] = n as u32;
                n
            } else {
                next as usize
            };
        }
        if found[node] == 0 {
            found[node] = i as u16 + 1;
        }
    }
    let states = goto.len();
    if states > usize::from(u16::MAX - 1) {
        return Err(SignaturesError::TooLong { states });
    }
    // Breadth first: a node's failure state is shallower, so its steps
    // are complete when the node's are filled in from them.
    let mut fail = vec![0u32; states];
    let mut delta = goto.clone();
    let mut queue: VecDeque<usize> = delta[0]
        .iter()
        .filter(|&&n| n != 0)
        .map(|&n| n as usize)
        .collect();
    while let Some(node) = queue.pop_front() {
        let f = fail[node] as usize;
        if found[node] == 0 {
            // A signature that is a suffix of this node's bytes ends here.
            found[node] = found[f];
        }
        for b in 0..256 {
            let child = goto[node][b];
            if child == 0 {
                delta[node][b] = delta[f][b];
            } else {
                fail[child as usize] = delta[f][b];
                queue.push_back(child as usize);
            }
        }
    }
    let state = |n: usize| n as u16 + START;
    let mut out = Vec::new();
    for (node, row) in delta.iter().enumerate() {
        for (b, &next) in row.iter().enumerate() {
            if next != 0 {
                out.push(Step {
                    state: state(node),
                    byte: b as u8,
                    next: state(next as usize),
                    found: found[next as usize],
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Runs the stored steps over `text` as the kernel does; the first
    /// find (1 + index) and where it ended.
    fn run(steps: &[Step], text: &[u8]) -> Option<(u16, usize)> {
        let map: HashMap<(u16, u8), (u16, u16)> = steps
            .iter()
            .map(|s| ((s.state, s.byte), (s.next, s.found)))
            .collect();
        let mut state = START;
        for (at, b) in text.iter().enumerate() {
            match map.get(&(state, *b)) {
                None => state = START,
                Some(&(next, found)) => {
                    state = next;
                    if found != 0 {
                        return Some((found, at));
                    }
                }
            }
        }
        None
    }

    /// The first position where any signature ends, by brute force.
    fn naive(signatures: &[&[u8]], text: &[u8]) -> Option<usize> {
        (0..text.len()).find(|&end| {
            signatures
                .iter()
                .any(|s| s.len() <= end + 1 && &text[end + 1 - s.len()..=end] == *s)
        })
    }

    #[test]
    fn finds_a_signature_anywhere_and_names_it() {
        let sigs: &[&[u8]] = &[b"mining.notify", b"nicehash"];
        let steps = steps(sigs).unwrap();
        let text = b"{\"id\":1,\"method\":\"mining.notify\"}";
        assert_eq!(run(&steps, text), Some((1, 30)));
        assert_eq!(run(&steps, b"GET /nicehash HTTP/1.1"), Some((2, 12)));
        assert_eq!(run(&steps, b"mining.notif"), None);
        assert_eq!(
            run(&steps, b"MINING.NOTIFY"),
            None,
            "bytes, not case-folded"
        );
    }

    #[test]
    fn a_signature_inside_another_is_found_where_it_ends() {
        // "bc" ends inside "abcd": found at the 'c' of "abc".
        let steps = steps(&[b"abcd", b"bc"]).unwrap();
        assert_eq!(run(&steps, b"xxabcd"), Some((2, 4)));
        // Overlapping restarts: "aab" after a failed "aaa...".
        let steps = super::steps(&[b"aab"]).unwrap();
        assert_eq!(run(&steps, b"aaaaab"), Some((1, 5)));
    }

    #[test]
    fn only_steps_away_from_the_start_are_stored() {
        let steps = steps(&[b"ab"]).unwrap();
        // From every state: 'a' leads to "a" (state 2); from "a", 'b'
        // leads to "ab" (state 3, found).
        let mut got: Vec<(u16, u8, u16, u16)> = steps
            .iter()
            .map(|s| (s.state, s.byte, s.next, s.found))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (1, b'a', 2, 0),
                (2, b'a', 2, 0),
                (2, b'b', 3, 1),
                (3, b'a', 2, 0)
            ]
        );
    }

    #[test]
    fn bad_lists_are_errors() {
        assert_eq!(
            steps(&[b"x", b""]),
            Err(SignaturesError::Empty { index: 1 })
        );
        let many: Vec<Vec<u8>> = (0..256).map(|i: u32| i.to_be_bytes().to_vec()).collect();
        let many: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        assert_eq!(steps(&many), Err(SignaturesError::TooMany { count: 256 }));
    }

    #[test]
    fn agrees_with_a_brute_force_search() {
        // A small alphabet makes overlaps and restarts common.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..500 {
            let sigs: Vec<Vec<u8>> = (0..1 + next(4))
                .map(|_| (0..1 + next(5)).map(|_| b'a' + next(3) as u8).collect())
                .collect();
            let sigs: Vec<&[u8]> = sigs.iter().map(Vec::as_slice).collect();
            let text: Vec<u8> = (0..next(40)).map(|_| b'a' + next(3) as u8).collect();
            let steps = steps(&sigs).unwrap();
            let got = run(&steps, &text);
            let want = naive(&sigs, &text);
            assert_eq!(got.map(|(_, at)| at), want, "{sigs:?} in {text:?}");
            if let Some((found, at)) = got {
                let s = sigs[usize::from(found) - 1];
                assert!(text[..=at].ends_with(s), "{s:?} does not end at {at}");
            }
        }
    }
}
