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

use sqlx::FromRow;
use uuid::Uuid;

use crate::{domain::user::QueryTerms, store::Pool};

/// Trigrams in less than this share of the sampled users count as absent.
const LEAST_SHARE: f64 = 0.005;
/// Below this many users in the sample nothing is known (a small
/// organization searches fast anyway).
const LEAST_SAMPLED: usize = 200;
/// About how many rows of the table a sample reads.
const SAMPLED_ROWS: f64 = 10_000.0;
/// How long a sample is used before another is taken.
const SAMPLE_FOR: Duration = Duration::from_secs(600);
/// How long after a sample of too few users (or a failed one) another is
/// taken.
const SAMPLE_TOO_FEW_AGAIN_AFTER: Duration = Duration::from_secs(30);
/// The oldest a sample may be and still be used, while the samples after it
/// fail: past it searches do without one (they count exactly) rather than
/// rest on what the organization looked like long ago.
const SAMPLE_USED_AT_MOST: Duration = Duration::from_secs(1_800);
/// What rechecking a row the index found costs, against reading one entry
/// of a trigram's list.
const RECHECK_COST: f64 = 20.0;

/// Each trigram's share of an organization's users (those under
/// `LEAST_SHARE` left out).
pub type Shares = HashMap<String, f64>;

/// Below this many of the organization's users in the sample, it does not
/// tell how many users a search matches (`Sample::matches`).
const LEAST_SAMPLED_TO_COUNT: usize = 1_000;

/// Sampled matches at or before a last name that make it a page's bound
/// (`SampledMatches::last_name_bound`): at least this many, and as many as
/// stand for `PAGES_BELOW_A_BOUND` pages of matches.
const LEAST_SAMPLED_MATCHES_BELOW_A_BOUND: usize = 3;
const PAGES_BELOW_A_BOUND: f64 = 2.0;

/// At most this many rows are sampled: the table's size is not known before
/// it was first analyzed (all of it is sampled then), and may be far off
/// after a large import.
const MOST_SAMPLED: i64 = 30_000;

/// What a sample of an organization's users tells.
#[derive(Debug)]
pub struct Sample {
    pub shares: Shares,
    /// The sampled users, in last-name order.
    users_sampled: SampledUsers,
    /// How many users the organization has, from the sample's size;
    /// `None` when the sample reached `MOST_SAMPLED` (the table's size was
    /// not known).
    users: Option<f64>,
}

/// Sampled users' keys, laid out to be searched in one pass: the search
/// keys one after another, each after a NUL (which no key holds, and which
/// separates words as ASCII punctuation does), and where each starts.
#[derive(Default)]
struct SampledUsers {
    search_keys: Vec<u8>,
    starts: Vec<usize>,
    last_names: Vec<String>,
}

impl std::fmt::Debug for SampledUsers {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} sampled users", self.len())
    }
}

impl SampledUsers {
    /// From `(search_key, last_name_key)` pairs, sorted by last name here.
    fn new(mut users: Vec<(String, String)>) -> Self {
        users.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        let mut sampled = Self::default();
        for (search_key, last_name) in users {
            sampled.search_keys.push(0);
            sampled.starts.push(sampled.search_keys.len());
            sampled.search_keys.extend_from_slice(search_key.as_bytes());
            sampled.last_names.push(last_name);
        }
        sampled
    }

    fn len(&self) -> usize {
        self.starts.len()
    }

    /// Which of the users a search matches (spec §3, as
    /// `QueryTerms::match_key` says it for one key); `None` for a term no
    /// key can hold.
    fn matching(&self, terms: &QueryTerms) -> Option<Vec<bool>> {
        let mut matching = vec![true; self.len()];
        let parts = terms.parts.iter().map(|part| (part, false));
        let starts = terms.word_starts.iter().map(|start| (start, true));
        for (term, word_start) in parts.chain(starts) {
            if term.is_empty() || term.contains('\0') {
                return None;
            }
            let holding = self.holding(term, word_start);
            for (matches, holds) in matching.iter_mut().zip(holding) {
                *matches &= holds;
            }
        }
        Some(matching)
    }

    /// Which users' keys hold `term` (at the start of a word when
    /// `word_start`): one pass over all the keys, and past a user's key as
    /// soon as it holds the term.
    fn holding(&self, term: &str, word_start: bool) -> Vec<bool> {
        let finder = memchr::memmem::Finder::new(term.as_bytes());
        let mut holding = vec![false; self.len()];
        let (mut from, mut user) = (0, 0);
        while let Some(found) = finder.find(&self.search_keys[from..]) {
            let at = from + found;
            while user + 1 < self.len() && self.starts[user + 1] <= at {
                user += 1;
            }
            // Each key follows a NUL: a byte stands before any term found.
            let before = self.search_keys[at - 1];
            if !word_start || (before.is_ascii() && !before.is_ascii_alphanumeric()) {
                holding[user] = true;
                from = self
                    .starts
                    .get(user + 1)
                    .copied()
                    .unwrap_or(self.search_keys.len());
            } else {
                from = at + 1;
            }
        }
        holding
    }
}

/// Where a page of a search's matches ends in last-name order, guessed from
/// the sample: about a page of them or more sort at or before `last_name`.
#[derive(Debug, PartialEq)]
pub struct LastNameBound {
    pub last_name: String,
    /// About how many users, matching or not, sort from the page's start up
    /// to `last_name`: what a walk of the last-name index would read.
    pub users_before: f64,
}

impl Sample {
    /// The sampled users a search matches, when the sample is large enough
    /// to tell how many users that stands for.
    pub fn matches(&self, terms: &QueryTerms) -> Option<SampledMatches<'_>> {
        let sampled = self.users_sampled.len();
        if sampled < LEAST_SAMPLED_TO_COUNT {
            return None;
        }
        Some(SampledMatches {
            matching: self.users_sampled.matching(terms)?,
            users_sampled: &self.users_sampled,
            users_per_sampled: self.users? / sampled as f64,
        })
    }
}

/// Which sampled users a search matches.
pub struct SampledMatches<'a> {
    matching: Vec<bool>,
    users_sampled: &'a SampledUsers,
    /// How many of the organization's users a sampled one stands for.
    users_per_sampled: f64,
}

impl SampledMatches<'_> {
    /// About how many of the organization's users the search matches.
    pub fn users(&self) -> f64 {
        let count = self.matching.iter().filter(|matches| **matches).count();
        count as f64 * self.users_per_sampled
    }

    /// The last name past which a page of `page_size` of the search's
    /// matches surely does not reach, counting from `from` (the last name
    /// the page starts at), when the sample shows one.
    pub fn last_name_bound(&self, from: Option<&str>, page_size: i64) -> Option<LastNameBound> {
        let last_names = &self.users_sampled.last_names;
        let first = last_names
            .partition_point(|last_name| from.is_some_and(|from| last_name.as_str() < from));
        let standing_for_the_pages =
            (PAGES_BELOW_A_BOUND * page_size as f64 / self.users_per_sampled).ceil() as usize;
        let sampled_matches = standing_for_the_pages.max(LEAST_SAMPLED_MATCHES_BELOW_A_BOUND);
        let bound = (first..last_names.len())
            .filter(|user| self.matching[*user])
            .nth(sampled_matches - 1)?;
        let last_name = &last_names[bound];
        let before = last_names[first..bound].partition_point(|sorted| sorted < last_name);
        Some(LastNameBound {
            last_name: last_name.clone(),
            users_before: before as f64 * self.users_per_sampled,
        })
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
    /// The last sample taken and when (`None` before the first, or when
    /// the organization had too few users).
    sample: Option<(Instant, Arc<Sample>)>,
    /// When the last attempt ended, and whether it brought a sample.
    tried: Option<(Instant, bool)>,
    sampling: bool,
}

impl Sampled {
    const NONE: Self = Self {
        sample: None,
        tried: None,
        sampling: false,
    };

    /// Whether to sample again: after a sample, once it is old; after a
    /// sample of too few users (the organization may be importing) or a
    /// failed one, sooner, yet not at every search.
    fn due(&self, now: Instant) -> bool {
        match self.tried {
            None => true,
            Some((at, brought)) => {
                let wait = if brought {
                    SAMPLE_FOR
                } else {
                    SAMPLE_TOO_FEW_AGAIN_AFTER
                };
                now.saturating_duration_since(at) > wait
            }
        }
    }

    /// The sample to use: the last one taken, unless the attempts after it
    /// failed and it is too old. An old sample whose organization was not
    /// searched for a while is used while the next is taken.
    fn usable(&self, now: Instant) -> Option<Arc<Sample>> {
        let (taken, sample) = self.sample.as_ref()?;
        let failing = matches!(self.tried, Some((_, false)));
        let too_old = now.saturating_duration_since(*taken) > SAMPLE_USED_AT_MOST;
        (!(failing && too_old)).then(|| sample.clone())
    }

    /// After an attempt ended at `now`: a failed one keeps the sample
    /// before it, with the time that one was taken.
    fn after(self, attempt: Result<Option<Sample>, sqlx::Error>, now: Instant) -> Self {
        let (sample, brought) = match attempt {
            Ok(Some(taken)) => (Some((now, Arc::new(taken))), true),
            Ok(None) => (None, false),
            Err(error) => {
                tracing::warn!(%error, "could not sample the users' common trigrams");
                (self.sample, false)
            }
        };
        Self {
            sample,
            tried: Some((now, brought)),
            sampling: false,
        }
    }
}

impl CommonTrigrams {
    /// The organization's sample if known; one is taken in the background
    /// when there is none or it is old.
    pub fn of(&self, pool: &Pool, organization_id: Uuid) -> Option<Arc<Sample>> {
        let now = Instant::now();
        let mut known = self.lock();
        let sampled = known.entry(organization_id).or_insert(Sampled::NONE);
        if sampled.due(now) && !sampled.sampling {
            sampled.sampling = true;
            let pool = pool.clone();
            tokio::spawn(async move {
                let attempt = sample(&pool, organization_id).await;
                let mut known = pool.common_trigrams().lock();
                let before = known.remove(&organization_id).unwrap_or(Sampled::NONE);
                known.insert(organization_id, before.after(attempt, Instant::now()));
            });
        }
        sampled.usable(now)
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
    // The sampled users, then the trigrams they hold (the sample is read
    // once: a materialized CTE).
    let rows: Vec<SampledRow> = sqlx::query_as(
        "with sampled as materialized (select search_key, last_name_key from users \
         tablesample system ($2) where organization_id = $1 limit $4), \
         counted as (select t, count(*) as holders from sampled, unnest(show_trgm(search_key)) as t group by t) \
         select search_key, last_name_key, null as trigram, 0::int8 as holders from sampled \
         union all select null, null, t, holders from counted \
         where holders > $3 * (select count(*) from sampled)",
    )
    .bind(organization_id)
    .bind(percent)
    .bind(LEAST_SHARE)
    .bind(MOST_SAMPLED)
    .fetch_all(&mut *connection)
    .await?;
    let mut users_sampled = Vec::new();
    let mut holders_of = Vec::new();
    for row in rows {
        match row {
            SampledRow {
                search_key: Some(search_key),
                last_name_key: Some(last_name_key),
                ..
            } => users_sampled.push((search_key, last_name_key)),
            SampledRow {
                trigram: Some(trigram),
                holders,
                ..
            } => holders_of.push((trigram, holders)),
            _ => {}
        }
    }
    let sampled = users_sampled.len();
    if sampled < LEAST_SAMPLED {
        return Ok(None);
    }
    Ok(Some(Sample {
        shares: holders_of
            .into_iter()
            .map(|(trigram, holders)| (trigram, holders as f64 / sampled as f64))
            .collect(),
        users: (sampled < MOST_SAMPLED as usize).then(|| sampled as f64 * 100.0 / percent),
        users_sampled: SampledUsers::new(users_sampled),
    }))
}

/// A sampled user, or a trigram and how many of them hold it.
#[derive(FromRow)]
struct SampledRow {
    search_key: Option<String>,
    last_name_key: Option<String>,
    trigram: Option<String>,
    holders: i64,
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

    /// `sampled` users of 100 times as many: a tenth named Silva, the others
    /// Alves to Costa in turn; each holds its number in its email.
    fn sample_of(sampled: usize) -> Sample {
        let last_names = ["alves", "barros", "costa"];
        let users = (0..sampled)
            .map(|i| {
                let last_name = if i % 10 == 0 {
                    "silva"
                } else {
                    last_names[i % 3]
                };
                let search_key = format!("ana {last_name} ana.{last_name}.{i}@acme.com");
                (search_key, last_name.to_owned())
            })
            .collect();
        Sample {
            shares: Shares::new(),
            users: Some(100.0 * sampled as f64),
            users_sampled: SampledUsers::new(users),
        }
    }

    fn terms(query: &str) -> QueryTerms {
        crate::domain::user::UserFilter {
            query_words: crate::domain::user::UserFilter::query_words(query),
            ..Default::default()
        }
        .query_terms()
    }

    #[test]
    fn a_failed_sample_keeps_the_one_before_only_while_it_is_young_enough() {
        let start = Instant::now();
        let later = |seconds: u64| start + Duration::from_secs(seconds);
        let failed = || Err(sqlx::Error::PoolTimedOut);
        let sampled = Sampled::NONE.after(Ok(Some(sample_of(2_000))), start);
        assert!(sampled.usable(later(599)).is_some());
        assert!(!sampled.due(later(599)));
        assert!(sampled.due(later(601)), "a sample is taken again when old");

        // Failures keep the sample taken at `start`, and are tried again sooner.
        let sampled = sampled.after(failed(), later(601));
        assert!(sampled.usable(later(602)).is_some());
        assert!(!sampled.due(later(630)));
        assert!(
            sampled.due(later(632)),
            "a failed sample is tried again after 30 s"
        );
        let sampled = sampled.after(failed(), later(1_790));
        assert!(sampled.usable(later(1_800)).is_some());
        assert!(
            sampled.usable(later(1_801)).is_none(),
            "failures never make an old sample look new"
        );

        // A sample not retaken for long, as nobody searched, is used while
        // the next is taken.
        let idle = Sampled::NONE.after(Ok(Some(sample_of(2_000))), start);
        assert!(idle.usable(later(7_200)).is_some());
        assert!(idle.due(later(7_200)));

        // A sample that succeeds again is used again.
        let sampled = sampled.after(Ok(Some(sample_of(2_000))), later(1_830));
        assert!(sampled.usable(later(1_831)).is_some());
        assert!(!sampled.due(later(2_400)));
    }

    #[test]
    fn an_organization_of_too_few_users_has_no_sample_and_is_sampled_again_sooner() {
        let start = Instant::now();
        let sampled = Sampled::NONE.after(Ok(Some(sample_of(2_000))), start);
        let sampled = sampled.after(Ok(None), start + Duration::from_secs(601));
        assert!(sampled.usable(start + Duration::from_secs(602)).is_none());
        assert!(sampled.due(start + Duration::from_secs(632)));
    }

    #[test]
    fn the_users_a_search_matches_are_counted_in_the_sample() {
        let sample = sample_of(2_000);
        let users_matching = |query| sample.matches(&terms(query)).unwrap().users();
        assert_eq!(users_matching("silva"), 20_000.0);
        assert_eq!(users_matching("A"), 200_000.0);
        assert_eq!(users_matching("si ana"), 20_000.0);
        assert_eq!(users_matching(".1999@"), 100.0);
        assert_eq!(users_matching("nobody"), 0.0);
        assert!(
            sample_of(999).matches(&terms("silva")).is_none(),
            "too few sampled"
        );
    }

    #[test]
    fn the_one_pass_over_all_keys_matches_as_each_key_alone_does() {
        let keys = [
            "joão silva jo.bijou@acme.com",
            "bijou ana-jo@x.org",
            "øystein sørensen 北京 o@x.no",
            "",
            "aaa aa a",
            "silvasilva",
        ];
        let sampled = SampledUsers::new(
            keys.iter()
                .enumerate()
                .map(|(i, key)| (key.to_string(), format!("{i:02}")))
                .collect(),
        );
        for query in [
            "jo",
            "o",
            "ão",
            "silva",
            "a",
            "aa",
            "aaa",
            "bi jo",
            "x.org",
            "s",
            "北",
            "京",
            "ø",
            "va@",
            "sil vasil",
        ] {
            let terms = terms(query);
            let matching = sampled.matching(&terms).unwrap();
            let each: Vec<bool> = keys.iter().map(|key| terms.match_key(key)).collect();
            assert_eq!(matching, each, "{query:?}");
        }
    }

    #[test]
    fn a_page_bound_is_the_last_name_of_the_sampled_matches_that_fill_a_page() {
        let sample = sample_of(2_000);
        // 600 Alves, 600 Barros and 600 Costa sampled before the Silvas.
        assert_eq!(
            sample
                .matches(&terms("silva"))
                .unwrap()
                .last_name_bound(None, 51),
            Some(LastNameBound {
                last_name: "silva".into(),
                users_before: 180_000.0,
            })
        );
        assert_eq!(
            sample
                .matches(&terms("ana"))
                .unwrap()
                .last_name_bound(None, 51),
            Some(LastNameBound {
                last_name: "alves".into(),
                users_before: 0.0,
            })
        );
        // From a page that starts at Barros, the Alves are not walked.
        let from_barros = sample
            .matches(&terms("silva"))
            .unwrap()
            .last_name_bound(Some("barros"), 51);
        assert_eq!(from_barros.map(|bound| bound.users_before), Some(120_000.0));
        // Where a sampled user stands for two, a page of 51 takes 51 sampled
        // matches: past the 33 Alves numbered from 19 to Barros.
        let small = Sample {
            users: Some(4_000.0),
            ..sample_of(2_000)
        };
        let bound = |page_size| {
            let matches = small.matches(&terms("s.19")).unwrap();
            matches.last_name_bound(None, page_size).unwrap().last_name
        };
        assert_eq!((bound(1), bound(51)), ("alves".into(), "barros".into()));
        // Fewer sampled matches than make a page: no bound.
        assert_eq!(
            sample
                .matches(&terms(".1999@"))
                .unwrap()
                .last_name_bound(None, 51),
            None
        );
        assert_eq!(
            sample
                .matches(&terms("ana"))
                .unwrap()
                .last_name_bound(Some("t"), 51),
            None
        );
    }

    #[test]
    fn letters_beyond_ascii_are_never_weighed() {
        assert_eq!(rare_part("joão.x", &emails()), None);
    }
}
