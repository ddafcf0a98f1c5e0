//! A search word such as "example-42.com" asks the trigram index for every
//! trigram it holds, and "com", "exa", "amp"… are in nearly every user's
//! key: reading their lists is most of the search's cost. The index is asked
//! instead for the piece of the word whose trigrams are rare in the
//! organization ("-42."), and the whole word is checked on the rows it
//! finds (`strpos`), which matches exactly the users the word does. Which
//! trigrams are common is learnt from a sample of the organization's users,
//! kept for a while and taken again in the background.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use uuid::Uuid;

use crate::store::Pool;

/// Trigrams in less than this share of the sampled users count as absent.
const LEAST_SHARE: f64 = 0.005;
/// Below this many users in the sample nothing is known (a small
/// organization searches fast anyway).
const LEAST_SAMPLED: i64 = 200;
/// About how many rows of the table a sample reads.
const SAMPLED_ROWS: f64 = 10_000.0;
/// How long a sample is used before another is taken.
const SAMPLE_FOR: Duration = Duration::from_secs(600);
/// What rechecking a row the index found costs, against reading one entry
/// of a trigram's list.
const RECHECK_COST: f64 = 20.0;

/// Each trigram's share of an organization's users (those under
/// `LEAST_SHARE` left out).
pub type Shares = HashMap<String, f64>;

/// Below this many of the organization's users in the sample, its shares
/// do not tell how many users a search matches (`Sample::users_holding`).
const LEAST_SAMPLED_TO_COUNT: i64 = 1_000;

/// What a sample of an organization's users tells.
#[derive(Debug)]
pub struct Sample {
    pub shares: Shares,
    /// How many users the organization has, from the sample's size.
    users: f64,
    /// How many of them the sample holds.
    sampled: i64,
}

impl Sample {
    /// About how many of the organization's users hold `trigram`, when the
    /// sample is large enough to tell.
    pub fn users_holding(&self, trigram: &str) -> Option<f64> {
        (self.sampled >= LEAST_SAMPLED_TO_COUNT)
            .then(|| self.shares.get(trigram).copied().unwrap_or(0.0) * self.users)
    }
}

/// The one trigram whose holders are exactly the users a search term
/// matches, where there is one: the start of a word of one or two ASCII
/// letters or digits ("  j" for "j", " jo" for "jo": pg_trgm pads a word
/// with two spaces before it), and a part of three ("ana", which only a
/// word can hold). pg_trgm also splits words at punctuation beyond ASCII,
/// which the search does not: there it counts a few starts more.
pub fn trigram_matching(term: &str, word_start: bool) -> Option<String> {
    if !term.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let term = term.to_ascii_lowercase();
    match (term.len(), word_start) {
        (1, true) => Some(format!("  {term}")),
        (2, true) => Some(format!(" {term}")),
        (3, false) => Some(term),
        _ => None,
    }
}

/// The piece of `word` to ask the index for instead of the whole word: a
/// run of letters and digits with the separators around it, the one the
/// index answers at least cost, when that is under half the whole word's.
/// `None`: no piece is that much cheaper, or the piece is all of it.
///
/// The trigrams are pg_trgm's: a run's letters padded with two spaces
/// before and one after where a separator stands there, so a piece's are a
/// subset of the word's. Its cost: the entries of its trigrams' lists the
/// index reads, and the rows it finds, at most those of its rarest trigram.
pub fn rare_part(word: &str, shares: &Shares) -> Option<String> {
    let characters: Vec<char> = word.chars().collect();
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < characters.len() {
        if !characters[start].is_alphanumeric() {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < characters.len() && characters[end].is_alphanumeric() {
            end += 1;
        }
        let run: String = characters[start..end].iter().collect();
        let (before, after) = (start > 0, end < characters.len());
        let from = if before { start - 1 } else { start };
        let to = if after { end + 1 } else { end };
        pieces.push((
            characters[from..to].iter().collect::<String>(),
            run.is_ascii().then(|| trigrams(&run, before, after)),
        ));
        start = end;
    }
    // Non-ASCII trigrams are hashed by pg_trgm: not comparable here, and
    // the whole word's cost unknown.
    let whole: Vec<Vec<String>> = pieces
        .iter()
        .map(|(_, trigrams)| trigrams.clone())
        .collect::<Option<_>>()?;
    let whole_cost = cost(&whole.concat(), shares);
    pieces
        .into_iter()
        .filter(|(piece, _)| piece != word)
        .filter_map(|(piece, trigrams)| Some((cost(&trigrams?, shares), piece)))
        .filter(|(piece_cost, _)| *piece_cost < whole_cost / 2.0)
        .min_by(|(a, _), (b, _)| a.total_cmp(b))
        .map(|(_, piece)| piece)
}

fn cost(trigrams: &[String], shares: &Shares) -> f64 {
    let share = |trigram: &String| shares.get(trigram).copied().unwrap_or(0.0);
    let read: f64 = trigrams.iter().map(share).sum();
    let found = trigrams.iter().map(share).fold(1.0, f64::min);
    // Of two alike, the one of more trigrams: it finds fewer rows.
    read + RECHECK_COST * found - 1e-9 * trigrams.len() as f64
}

/// pg_trgm's trigrams of a run of a LIKE pattern's text, lowercased: padded
/// where a separator stands before (two spaces) or after (one).
fn trigrams(run: &str, separator_before: bool, separator_after: bool) -> Vec<String> {
    let mut padded = String::new();
    if separator_before {
        padded.push_str("  ");
    }
    padded.push_str(&run.to_lowercase());
    if separator_after {
        padded.push(' ');
    }
    let characters: Vec<char> = padded.chars().collect();
    characters
        .windows(3)
        .map(|window| window.iter().collect())
        .collect()
}

/// The trigrams' shares of each organization that searched, as last sampled.
#[derive(Default)]
pub struct CommonTrigrams {
    by_organization: Mutex<HashMap<Uuid, Sampled>>,
}

struct Sampled {
    at: Instant,
    /// `None` while the first sample is taken, or when too few users.
    sample: Option<Arc<Sample>>,
    sampling: bool,
}

impl CommonTrigrams {
    /// The organization's sample if known; one is taken in the background
    /// when there is none or it is old.
    pub fn of(&self, pool: &Pool, organization_id: Uuid) -> Option<Arc<Sample>> {
        let mut known = self.lock();
        let sampled = known.entry(organization_id).or_insert(Sampled {
            at: Instant::now(),
            sample: None,
            sampling: false,
        });
        let stale = sampled.sample.is_none() || sampled.at.elapsed() > SAMPLE_FOR;
        if stale && !sampled.sampling {
            sampled.sampling = true;
            let pool = pool.clone();
            tokio::spawn(async move {
                let taken = match sample(&pool, organization_id).await {
                    Ok(taken) => taken.map(Arc::new),
                    Err(error) => {
                        tracing::warn!(%error, "could not sample the users' common trigrams");
                        None
                    }
                };
                let mut known = pool.common_trigrams().lock();
                known.insert(
                    organization_id,
                    Sampled {
                        at: Instant::now(),
                        sample: taken,
                        sampling: false,
                    },
                );
            });
        }
        sampled.sample.clone()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Sampled>> {
        // Every change is a whole entry: a poisoned map is still valid.
        self.by_organization
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for CommonTrigrams {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("CommonTrigrams")
    }
}

/// The share of the users holding each trigram, in a sample of about
/// `SAMPLED_ROWS` rows of the table (`None` when the organization has too
/// few users there).
pub async fn sample(pool: &Pool, organization_id: Uuid) -> Result<Option<Sample>, sqlx::Error> {
    let mut connection = pool.acquire().await?;
    // -1 before the table was first analyzed: all of it.
    let rows_in_table: f32 =
        sqlx::query_scalar("select reltuples from pg_class where oid = 'users'::regclass")
            .fetch_one(&mut *connection)
            .await?;
    let percent = if rows_in_table > 0.0 {
        (100.0 * SAMPLED_ROWS / f64::from(rows_in_table)).clamp(0.1, 100.0)
    } else {
        100.0
    };
    // One row more, without a trigram, carries the sample's size (the
    // sample is read once: a CTE used twice is materialized).
    let rows: Vec<(Option<String>, i64, i64)> = sqlx::query_as(
        "with sampled as (select search_key from users tablesample system ($2) \
         where organization_id = $1), \
         counted as (select t, count(*) as holders from sampled, unnest(show_trgm(search_key)) as t group by t) \
         select t, holders, (select count(*) from sampled) from counted \
         where holders > $3 * (select count(*) from sampled) \
         union all select null, 0, (select count(*) from sampled)",
    )
    .bind(organization_id)
    .bind(percent)
    .bind(LEAST_SHARE)
    .fetch_all(&mut *connection)
    .await?;
    let sampled = rows.first().map_or(0, |(_, _, users)| *users);
    if sampled < LEAST_SAMPLED {
        return Ok(None);
    }
    Ok(Some(Sample {
        shares: rows
            .into_iter()
            .filter_map(|(trigram, holders, _)| Some((trigram?, holders as f64 / sampled as f64)))
            .collect(),
        users: sampled as f64 * 100.0 / percent,
        sampled,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(of: &[(&str, f64)]) -> Shares {
        of.iter()
            .map(|(trigram, share)| (trigram.to_string(), *share))
            .collect()
    }

    /// "example" and "com" in every user's email, a domain number in 1 of
    /// 97, its first digit in 11.
    fn emails() -> Shares {
        let mut all = shares(&[("  4", 0.11), (" 42", 0.01), ("42 ", 0.01)]);
        for trigram in [
            "  e", " ex", "exa", "xam", "amp", "mpl", "ple", "le ", "  c", " co", "com", "om ",
        ] {
            all.insert(trigram.to_string(), 1.0);
        }
        all
    }

    #[test]
    fn the_piece_of_rare_trigrams_is_asked_with_its_separators() {
        let emails = emails();
        assert_eq!(
            rare_part("example-42.com", &emails).as_deref(),
            Some("-42.")
        );
        assert_eq!(rare_part("acme.com", &emails).as_deref(), Some("acme."));
        assert_eq!(
            rare_part("ana@acme.com", &emails).as_deref(),
            Some("@acme.")
        );
    }

    #[test]
    fn a_word_of_one_run_or_of_common_pieces_only_is_asked_whole() {
        let emails = emails();
        assert_eq!(rare_part("silva", &emails), None);
        assert_eq!(rare_part("example.com", &emails), None);
        assert_eq!(rare_part("-42.", &Shares::new()), None, "all of it");
    }

    #[test]
    fn a_piece_as_costly_as_the_word_is_not_asked() {
        // "jo" ends few words; "silva" is in a tenth of the users.
        let silvas = shares(&[
            ("  s", 0.3),
            (" si", 0.1),
            ("sil", 0.1),
            ("ilv", 0.1),
            ("lva", 0.1),
        ]);
        assert_eq!(rare_part("jo.silva", &silvas).as_deref(), Some("jo."));
        let jos = shares(&[("jo ", 0.4)]);
        assert_eq!(rare_part("jo.silva", &jos).as_deref(), Some(".silva"));
        let both = shares(&[("jo ", 0.1), ("  s", 0.1), ("sil", 0.1)]);
        assert_eq!(rare_part("jo.silva", &both), None);
    }

    #[test]
    fn a_piece_is_never_asked_for_trigrams_the_word_would_not_ask() {
        // pg_trgm pads only where a separator stands: "-42." gives "  4",
        // " 42" and "42 "; "example-" gives no leading "  e".
        assert_eq!(trigrams("42", true, true), ["  4", " 42", "42 "]);
        assert_eq!(
            trigrams("example", false, true),
            ["exa", "xam", "amp", "mpl", "ple", "le "]
        );
    }

    #[test]
    fn a_short_start_or_a_part_of_three_is_counted_by_its_one_trigram() {
        assert_eq!(trigram_matching("J", true).as_deref(), Some("  j"));
        assert_eq!(trigram_matching("jo", true).as_deref(), Some(" jo"));
        assert_eq!(trigram_matching("ana", false).as_deref(), Some("ana"));
        // More than one trigram, a separator, or hashed by pg_trgm.
        assert_eq!(trigram_matching("silva", false), None);
        assert_eq!(trigram_matching("a.b", false), None);
        assert_eq!(trigram_matching("ç", true), None);
        let sample = |sampled| Sample {
            shares: shares(&[(" jo", 0.25)]),
            users: 100_000.0,
            sampled,
        };
        assert_eq!(sample(5_000).users_holding(" jo"), Some(25_000.0));
        assert_eq!(sample(5_000).users_holding(" zz"), Some(0.0));
        assert_eq!(sample(999).users_holding(" jo"), None, "too few sampled");
    }

    #[test]
    fn letters_beyond_ascii_are_never_weighed() {
        assert_eq!(rare_part("joão.x", &emails()), None);
    }
}
