//! Subject–verb number agreement (Linzen, Dupoux & Goldberg 2016) on a synthetic grammar:
//! does a recurrent network track the subject (syntactic recency) or the nearest noun
//! (sequential recency) when it has to predict the verb's number?
//!
//! # The grammar
//!
//! Every sentence is
//!
//! ```text
//! the SUBJ  M_1 … M_k  ADV*  VERB  the N  .
//! ```
//!
//! - `SUBJ` is a noun, singular or plural (`writer` / `writers`), always at position 1;
//! - each modifier `M_i` holds one noun and is a prepositional phrase `PREP the [ADJ] N`
//!   ("of the books", "near the old tables", 3 tokens + the optional adjective) or an
//!   object relative clause `that the [ADJ] N V_rc` ("that the critics praise", 4 tokens +
//!   the adjective), whose own verb agrees with *its* noun `N`;
//! - the `k` intervening nouns are either **attractors** (the opposite number of the subject)
//!   or non-attractors (the subject's number), in random order;
//! - fillers that are not nouns — an adjective before a modifier's noun, adverbs (`really`,
//!   `surely`, …) before the verb — pad the sentence to the requested subject–verb distance;
//! - `VERB` (`is`/`are`, `has`/`have`, `likes`/`like`) agrees with the subject: its number is
//!   the label; the predicate `the N .` ends the sentence.
//!
//! The **distance** is the number of tokens strictly between the subject and the verb, so the
//! verb sits at position `distance + 2` and the prefix the models read is `distance + 2`
//! tokens long. With `a` attractors the distance is at least `3a` (every noun in a bare PP);
//! what is left is spent on relative clauses (one token more than a PP), non-attractor nouns
//! (at most [`Grammar::max_nonattractors`]) and fillers. Examples (distance, attractors):
//!
//! ```text
//! the writer is the book .                                              (0, 0)
//! the writer of the books is the table .                                (3, 1)
//! the writer that the critics praise really has the book .              (5, 1)
//! the writers near the table of the old author surely are the critics . (8, 2)
//! ```
//!
//! The nearest noun before the verb is the last modifier's noun (or the subject when `k = 0`):
//! the **sequential-recency baseline** predicts its number and errs exactly on the sentences
//! whose last intervening noun is an attractor ([`recency_errors`]).
//!
//! ## The preamble variant ([`GrammarKind::Preamble`])
//!
//! In the fixed grammar the subject is always the first noun, at position 1: "remember the
//! first noun's number" solves the task, a shortcut natural text does not allow (Linzen et
//! al.'s subjects stand anywhere, and the first noun is often not the subject). The variant puts
//! a sentence-initial **preamble** of `p` nouns before the subject, `p` uniform in
//! `0..=max_preamble` (one `p` per training batch; balanced in the test sets, [`generate`]):
//!
//! ```text
//! [ (CONJ the N V the N | PREP the N) (PREP the N)* , ]  the SUBJ  M_1 … M_k  ADV*  VERB  the N  .
//! ```
//!
//! prepositional phrases `PREP the N` and, for `p ≥ 2` with probability `p_clause`, an opening
//! adverbial clause `CONJ the N V the N` (`because` / `while` / `although`; its verb agrees with
//! its own subject), always `3p + 1` tokens with the comma. Every preamble noun's number is a
//! fair coin, independent of the subject's, so the **first-noun baseline** ([`first_noun_errors`])
//! errs on half the sentences with a preamble, the recency baseline is as before (the preamble
//! is not between subject and verb), and only the syntax — the subject is the noun after the
//! comma — gives the label. Attractors and the distance are counted between subject and verb
//! as before; the subject sits at `3p + 2`.
//!
//! ```text
//! near the tables , the writer of the books is the table .                          (p 1, d 3, a 1)
//! because the critics praise the author , the writers surely are the book .         (p 2, d 1, a 0)
//! behind the painting of the students , the teacher that the critics praise has the book . (p 2, d 5, a 1)
//! ```
//!
//! # The models and the two tasks
//!
//! A cell of the registry (tanh RNN, LSTM, GRU) in [`Unidirectional`] with a linear readout,
//! one-hot token inputs, trained through the one [`Trainer`]:
//!
//! - [`Task::Number`] — number prediction: read the prefix (up to, not including, the verb)
//!   and classify singular/plural at the last step (2-class softmax);
//! - [`Task::Lm`] — the language-model reading: next-token prediction on whole sentences
//!   (softmax over the vocabulary at every step), scored on the test prefixes by whether
//!   `P(verb in the subject's number) > P(verb in the other number)` at the verb position.
//!
//! Models come at equal hidden size ([`Sizing::Hidden`]) and at equal parameter count
//! ([`Sizing::Params`]: the hidden size whose total count, cell and readout, is closest to the
//! LSTM's at the same `--hidden`, [`matched_hidden`]).
//!
//! # Randomness
//!
//! Everything comes from [`stream`]`(seed, [AGREEMENT, …])` named per work item: a run's
//! weights by (task, cell, hidden, replicate) — the same for both grammars — its training
//! batches and gradient probe by (task, replicate, grammar) — the same sentences for every
//! model of a task, replicate and grammar — and the test sets by (replicate, attractors,
//! distance, grammar) — the same for both tasks and every model, so the baselines and all
//! models are scored on identical sentences.

use std::fmt;
use std::str::FromStr;

use nalgebra::{DMatrix, RealField};
use rand::RngExt;

use crate::error::BpttError;
use crate::nn::arch::Unidirectional;
use crate::nn::cell::Cell;
use crate::nn::cells::{AnyCell, CellKind};
use crate::nn::engine::Inputs;
use crate::nn::model::NetworkModel;
use crate::nn::readout::Readout;
use crate::rng::{Rng, stream};
use crate::train::optim::Optimizer;
use crate::train::trainer::{self, Batch, Dtype, Loss, ReadoutAt, Schedule, Targets, Trainer};

// ---------------------------------------------------------------------------------------------
// The vocabulary
// ---------------------------------------------------------------------------------------------

/// Noun lemmas, (singular, plural).
pub const NOUNS: [(&str, &str); 8] = [
    ("writer", "writers"),
    ("book", "books"),
    ("table", "tables"),
    ("critic", "critics"),
    ("author", "authors"),
    ("teacher", "teachers"),
    ("student", "students"),
    ("painting", "paintings"),
];
/// Prepositions of the prepositional-phrase modifiers.
pub const PREPOSITIONS: [&str; 4] = ["of", "near", "behind", "beside"];
/// Verbs of the relative clauses, (singular, plural): they agree with the clause's own noun.
pub const RC_VERBS: [(&str, &str); 3] = [
    ("praises", "praise"),
    ("admires", "admire"),
    ("knows", "know"),
];
/// Main verbs, (singular, plural): the verb whose number is predicted.
pub const MAIN_VERBS: [(&str, &str); 3] = [("is", "are"), ("has", "have"), ("likes", "like")];
/// Adjectives: fillers before a modifier's noun.
pub const ADJECTIVES: [&str; 6] = ["old", "famous", "small", "new", "red", "young"];
/// Adverbs: fillers before the verb.
pub const ADVERBS: [&str; 4] = ["really", "surely", "often", "clearly"];
/// Subordinating conjunctions: open an adverbial clause of the preamble
/// ([`GrammarKind::Preamble`]).
pub const CONJUNCTIONS: [&str; 3] = ["because", "while", "although"];

/// `.`, the end of a sentence.
pub const PERIOD: usize = 0;
/// `the`.
pub const THE: usize = 1;
/// `that`, opening a relative clause.
pub const THAT: usize = 2;
const NOUN0: usize = 3;
const PREP0: usize = NOUN0 + 2 * NOUNS.len();
const RC_VERB0: usize = PREP0 + PREPOSITIONS.len();
const VERB0: usize = RC_VERB0 + 2 * RC_VERBS.len();
const ADJ0: usize = VERB0 + 2 * MAIN_VERBS.len();
const ADV0: usize = ADJ0 + ADJECTIVES.len();
const CONJ0: usize = ADV0 + ADVERBS.len();
/// `,`, closing the preamble ([`GrammarKind::Preamble`]).
pub const COMMA: usize = CONJ0 + CONJUNCTIONS.len();
/// The vocabulary size: token ids are `0..VOCAB` (the same for both grammars: the fixed grammar
/// never uses the conjunctions and the comma).
pub const VOCAB: usize = COMMA + 1;

/// Grammatical number. As a class of [`Task::Number`]: singular 0, plural 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Number {
    Singular,
    Plural,
}

impl Number {
    /// The class index: singular 0, plural 1.
    #[must_use]
    pub fn class(self) -> usize {
        self as usize
    }
    /// The other number.
    #[must_use]
    pub fn flip(self) -> Number {
        match self {
            Number::Singular => Number::Plural,
            Number::Plural => Number::Singular,
        }
    }
}

/// The token of noun `lemma` (index into [`NOUNS`]) in `number`.
#[must_use]
pub fn noun(lemma: usize, number: Number) -> usize {
    NOUN0 + 2 * lemma + number.class()
}
/// The token of main verb `lemma` (index into [`MAIN_VERBS`]) in `number`.
#[must_use]
pub fn verb(lemma: usize, number: Number) -> usize {
    VERB0 + 2 * lemma + number.class()
}
/// The token of relative-clause verb `lemma` (index into [`RC_VERBS`]) in `number`.
#[must_use]
pub fn rc_verb(lemma: usize, number: Number) -> usize {
    RC_VERB0 + 2 * lemma + number.class()
}

/// The number of a noun token, `None` for every other token.
#[must_use]
pub fn noun_number(token: usize) -> Option<Number> {
    (NOUN0..PREP0).contains(&token).then(|| {
        if (token - NOUN0).is_multiple_of(2) {
            Number::Singular
        } else {
            Number::Plural
        }
    })
}

/// A main verb token's (lemma, number), `None` for every other token.
#[must_use]
pub fn main_verb(token: usize) -> Option<(usize, Number)> {
    (VERB0..ADJ0).contains(&token).then(|| {
        let i = token - VERB0;
        let n = if i.is_multiple_of(2) {
            Number::Singular
        } else {
            Number::Plural
        };
        (i / 2, n)
    })
}

/// The word of a token id (`None` outside `0..VOCAB`).
#[must_use]
pub fn word(token: usize) -> Option<&'static str> {
    let pair =
        |p: (&'static str, &'static str), i: usize| if i.is_multiple_of(2) { p.0 } else { p.1 };
    Some(match token {
        PERIOD => ".",
        THE => "the",
        THAT => "that",
        t if t < PREP0 => pair(NOUNS[(t - NOUN0) / 2], t - NOUN0),
        t if t < RC_VERB0 => PREPOSITIONS[t - PREP0],
        t if t < VERB0 => pair(RC_VERBS[(t - RC_VERB0) / 2], t - RC_VERB0),
        t if t < ADJ0 => pair(MAIN_VERBS[(t - VERB0) / 2], t - VERB0),
        t if t < ADV0 => ADJECTIVES[t - ADJ0],
        t if t < CONJ0 => ADVERBS[t - ADV0],
        t if t < COMMA => CONJUNCTIONS[t - CONJ0],
        COMMA => ",",
        _ => return None,
    })
}

/// The words of `tokens`, space-separated (unknown ids as `?`).
#[must_use]
pub fn render(tokens: &[usize]) -> String {
    tokens
        .iter()
        .map(|&t| word(t).unwrap_or("?"))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

/// The grammar's free choices.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Grammar {
    /// P(the subject is singular).
    pub p_singular: f64,
    /// Most non-attractor intervening nouns per sentence (their count is uniform in
    /// `0..=min(this, ⌊distance/3⌋ − attractors)`).
    pub max_nonattractors: usize,
    /// P(a modifier is a relative clause rather than a prepositional phrase), where the
    /// distance leaves room for one.
    pub p_relative: f64,
    /// P(a modifier's noun gets an adjective), while fillers are left.
    pub p_adjective: f64,
    /// Most nouns in the sentence-initial preamble (0: no preamble, the fixed grammar with the
    /// subject at position 1; see [`GrammarKind`]).
    pub max_preamble: usize,
    /// P(a preamble of at least two nouns opens with an adverbial clause, `CONJ the N V the N`,
    /// rather than a prepositional phrase).
    pub p_clause: f64,
}

impl Default for Grammar {
    /// The fixed grammar (no preamble).
    fn default() -> Self {
        Grammar {
            p_singular: 0.5,
            max_nonattractors: 2,
            p_relative: 1.0 / 3.0,
            p_adjective: 0.5,
            max_preamble: 0,
            p_clause: 0.5,
        }
    }
}

/// Which grammar: where the subject is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrammarKind {
    /// No preamble: the subject is always the first noun, at position 1.
    Fixed,
    /// A preamble of `0..=max_preamble` nouns of random number before the subject: neither the
    /// first noun nor the nearest noun gives the verb's number, only the syntax does.
    Preamble,
}

/// Both grammars, in plan order.
pub const ALL_GRAMMARS: [GrammarKind; 2] = [GrammarKind::Fixed, GrammarKind::Preamble];

impl GrammarKind {
    /// `fixed` or `preamble`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            GrammarKind::Fixed => "fixed",
            GrammarKind::Preamble => "preamble",
        }
    }
    /// The stream id.
    #[must_use]
    pub fn id(self) -> u64 {
        self as u64
    }
    /// `base` as this grammar: the fixed one has no preamble, the other keeps `base`'s
    /// `max_preamble`.
    #[must_use]
    pub fn apply(self, base: &Grammar) -> Grammar {
        match self {
            GrammarKind::Fixed => Grammar {
                max_preamble: 0,
                ..*base
            },
            GrammarKind::Preamble => *base,
        }
    }
}

impl FromStr for GrammarKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_GRAMMARS
            .iter()
            .copied()
            .find(|g| g.name() == s)
            .ok_or_else(|| format!("unknown grammar '{s}' (expected fixed, preamble or both)"))
    }
}

impl fmt::Display for GrammarKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Grammar {
    /// Check that the probabilities are probabilities.
    pub fn validate(&self) -> Result<(), BpttError> {
        for (what, p) in [
            ("p_singular", self.p_singular),
            ("p_relative", self.p_relative),
            ("p_adjective", self.p_adjective),
            ("p_clause", self.p_clause),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(BpttError::Invalid(format!(
                    "{what} must be in [0, 1], got {p}"
                )));
            }
        }
        Ok(())
    }

    /// The label a constant predictor trained on this grammar gives: the more probable number.
    #[must_use]
    pub fn majority(&self) -> Number {
        if self.p_singular >= 0.5 {
            Number::Singular
        } else {
            Number::Plural
        }
    }
}

/// Tokens a prepositional-phrase modifier takes without its adjective (`of the books`).
pub const PP_TOKENS: usize = 3;

/// One generated sentence and what is known about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentence {
    /// Every token, the final `.` included.
    pub tokens: Vec<usize>,
    /// Index of the subject in `tokens`: 1 without a preamble, `3·preamble + 2` with one.
    pub subject: usize,
    /// Index of the main verb in `tokens` (`subject + distance + 1`).
    pub verb: usize,
    /// The subject's number, which the verb agrees with: the label.
    pub number: Number,
    /// The main verb's lemma (index into [`MAIN_VERBS`]).
    pub verb_lemma: usize,
    /// Intervening nouns of the opposite number.
    pub attractors: usize,
    /// Intervening nouns in all (attractors and non-attractors).
    pub nouns: usize,
    /// Tokens strictly between the subject and the verb.
    pub distance: usize,
    /// The number of the nearest noun before the verb (the subject when nothing intervenes).
    pub nearest: Number,
    /// Nouns in the preamble, before the subject (0: none, no preamble).
    pub preamble: usize,
    /// The number of the sentence's first noun (the subject's when there is no preamble).
    pub first: Number,
}

impl Sentence {
    /// What the number-prediction models read: every token before the verb.
    #[must_use]
    pub fn prefix(&self) -> &[usize] {
        &self.tokens[..self.verb]
    }
}

/// The smallest distance that holds `attractors` attractors: each in a bare prepositional
/// phrase.
#[must_use]
pub fn min_distance(attractors: usize) -> usize {
    PP_TOKENS * attractors
}

/// Tokens of a preamble of `nouns` nouns: `3·nouns + 1` (the comma included), 0 for none.
#[must_use]
pub fn preamble_tokens(nouns: usize) -> usize {
    if nouns == 0 { 0 } else { PP_TOKENS * nouns + 1 }
}

/// One sentence with exactly `attractors` attractors and subject–verb distance `distance`, and
/// a preamble of `0..=grammar.max_preamble` nouns drawn uniformly (none, and no draw, in the
/// fixed grammar); an error if the distance cannot hold the attractors
/// (`distance < 3·attractors`).
pub fn sentence(
    rng: &mut Rng,
    grammar: &Grammar,
    attractors: usize,
    distance: usize,
) -> Result<Sentence, BpttError> {
    let p = if grammar.max_preamble == 0 {
        0
    } else {
        rng.random_range(0..=grammar.max_preamble)
    };
    sentence_with(rng, grammar, attractors, distance, p)
}

/// The preamble of `nouns` nouns, each of a fair-coin number independent of everything else:
/// an optional adverbial clause `CONJ the N V the N` (two nouns, its verb agreeing with its
/// own subject; probability `p_clause` when `nouns ≥ 2`), then prepositional phrases
/// `PREP the N` for the rest, then `,`. Returns the first noun's number (`None` for none).
fn push_preamble(
    rng: &mut Rng,
    grammar: &Grammar,
    nouns: usize,
    tokens: &mut Vec<usize>,
) -> Option<Number> {
    if nouns == 0 {
        return None;
    }
    let coin = |rng: &mut Rng| {
        if rng.random_bool(0.5) {
            Number::Singular
        } else {
            Number::Plural
        }
    };
    let mut first = None;
    let mut left = nouns;
    if nouns >= 2 && rng.random_bool(grammar.p_clause) {
        let (a, b) = (coin(rng), coin(rng));
        tokens.extend([
            CONJ0 + rng.random_range(0..CONJUNCTIONS.len()),
            THE,
            noun(rng.random_range(0..NOUNS.len()), a),
            rc_verb(rng.random_range(0..RC_VERBS.len()), a),
            THE,
            noun(rng.random_range(0..NOUNS.len()), b),
        ]);
        first = Some(a);
        left -= 2;
    }
    for _ in 0..left {
        let n = coin(rng);
        tokens.extend([
            PREP0 + rng.random_range(0..PREPOSITIONS.len()),
            THE,
            noun(rng.random_range(0..NOUNS.len()), n),
        ]);
        first.get_or_insert(n);
    }
    tokens.push(COMMA);
    first
}

/// [`sentence`] with a preamble of exactly `preamble` nouns (at most `grammar.max_preamble`).
pub fn sentence_with(
    rng: &mut Rng,
    grammar: &Grammar,
    attractors: usize,
    distance: usize,
    preamble: usize,
) -> Result<Sentence, BpttError> {
    if preamble > grammar.max_preamble {
        return Err(BpttError::Invalid(format!(
            "a preamble of {preamble} nouns, but the grammar allows at most {}",
            grammar.max_preamble
        )));
    }
    if distance < min_distance(attractors) {
        return Err(BpttError::Invalid(format!(
            "{attractors} attractors need a subject–verb distance of at least {}, got {distance}",
            min_distance(attractors)
        )));
    }
    let number = if rng.random_bool(grammar.p_singular) {
        Number::Singular
    } else {
        Number::Plural
    };
    let room = distance / PP_TOKENS - attractors;
    let others = rng.random_range(0..=grammar.max_nonattractors.min(room));
    let k = attractors + others;
    // which intervening nouns are attractors: a random arrangement of `attractors` of the k
    let mut is_attractor: Vec<bool> = (0..k).map(|i| i < attractors).collect();
    for i in (1..k).rev() {
        is_attractor.swap(i, rng.random_range(0..=i));
    }
    // every modifier a PP (3 tokens); a relative clause costs one token more
    let mut spare = distance - PP_TOKENS * k;
    let relative: Vec<bool> = (0..k)
        .map(|_| {
            let rc = spare > 0 && rng.random_bool(grammar.p_relative);
            spare -= usize::from(rc);
            rc
        })
        .collect();
    let mut tokens = Vec::with_capacity(preamble_tokens(preamble) + distance + 6);
    let first = push_preamble(rng, grammar, preamble, &mut tokens).unwrap_or(number);
    debug_assert_eq!(tokens.len(), preamble_tokens(preamble));
    tokens.push(THE);
    let subject = tokens.len();
    tokens.push(noun(rng.random_range(0..NOUNS.len()), number));
    let mut nearest = number;
    for (&attractor, &rc) in is_attractor.iter().zip(&relative) {
        let n = if attractor { number.flip() } else { number };
        tokens.push(if rc {
            THAT
        } else {
            PREP0 + rng.random_range(0..PREPOSITIONS.len())
        });
        tokens.push(THE);
        if spare > 0 && rng.random_bool(grammar.p_adjective) {
            tokens.push(ADJ0 + rng.random_range(0..ADJECTIVES.len()));
            spare -= 1;
        }
        tokens.push(noun(rng.random_range(0..NOUNS.len()), n));
        if rc {
            tokens.push(rc_verb(rng.random_range(0..RC_VERBS.len()), n));
        }
        nearest = n;
    }
    for _ in 0..spare {
        tokens.push(ADV0 + rng.random_range(0..ADVERBS.len()));
    }
    let verb_lemma = rng.random_range(0..MAIN_VERBS.len());
    let at = tokens.len();
    tokens.push(verb(verb_lemma, number));
    let object = if rng.random_bool(0.5) {
        Number::Singular
    } else {
        Number::Plural
    };
    tokens.extend([THE, noun(rng.random_range(0..NOUNS.len()), object), PERIOD]);
    debug_assert_eq!(at, subject + distance + 1);
    Ok(Sentence {
        tokens,
        subject,
        verb: at,
        number,
        verb_lemma,
        attractors,
        nouns: k,
        distance,
        nearest,
        preamble,
        first,
    })
}

/// `n` sentences with exactly `attractors` attractors at subject–verb distance `distance`, the
/// i-th with a preamble of `i mod (max_preamble + 1)` nouns (balanced; the fixed grammar: none,
/// all of one length, `distance + 6` tokens).
pub fn generate(
    rng: &mut Rng,
    grammar: &Grammar,
    n: usize,
    attractors: usize,
    distance: usize,
) -> Result<Vec<Sentence>, BpttError> {
    (0..n)
        .map(|i| {
            let p = i % (grammar.max_preamble + 1);
            sentence_with(rng, grammar, attractors, distance, p)
        })
        .collect()
}

/// The training distribution's attractor count at `distance`: P(a) ∝ 2^−a over
/// `a = 0..=min(max, ⌊distance/3⌋)` — most sentences have none, as in natural text.
pub fn draw_attractors(rng: &mut Rng, max: usize, distance: usize) -> usize {
    let top = max.min(distance / PP_TOKENS);
    // P(a) = 2^(top−a) / (2^(top+1) − 1)
    let total = (1u64 << (top + 1)) - 1;
    let mut u = rng.random_range(0..total);
    for a in 0..=top {
        let w = 1u64 << (top - a);
        if u < w {
            return a;
        }
        u -= w;
    }
    top
}

/// `n` training sentences at `distance` with `preamble` preamble nouns (all of one length),
/// attractor counts from [`draw_attractors`].
pub fn training_sentences(
    rng: &mut Rng,
    grammar: &Grammar,
    n: usize,
    max_attractors: usize,
    distance: usize,
    preamble: usize,
) -> Result<Vec<Sentence>, BpttError> {
    (0..n)
        .map(|_| {
            let a = draw_attractors(rng, max_attractors, distance);
            sentence_with(rng, grammar, a, distance, preamble)
        })
        .collect()
}

/// Sentences whose nearest noun before the verb disagrees with the subject: the errors of
/// the sequential-recency baseline.
#[must_use]
pub fn recency_errors(sentences: &[Sentence]) -> usize {
    sentences.iter().filter(|s| s.nearest != s.number).count()
}

/// Sentences whose first noun disagrees with the subject: the errors of the first-noun
/// baseline (always 0 in the fixed grammar, where the first noun is the subject).
#[must_use]
pub fn first_noun_errors(sentences: &[Sentence]) -> usize {
    sentences.iter().filter(|s| s.first != s.number).count()
}

/// The errors of the constant predictor `majority`.
#[must_use]
pub fn majority_errors(sentences: &[Sentence], majority: Number) -> usize {
    sentences.iter().filter(|s| s.number != majority).count()
}

/// The tokens `range` of every sentence as the engine's token columns: step t of sentence b
/// is entry `t·B + b`; an error unless every sentence has the same length.
pub fn columns(
    sentences: &[Sentence],
    range: impl Fn(&Sentence) -> &[usize],
) -> Result<Vec<usize>, BpttError> {
    let b = sentences.len();
    let steps = sentences.first().map_or(0, |s| range(s).len());
    let mut ids = vec![0; steps * b];
    for (j, s) in sentences.iter().enumerate() {
        let r = range(s);
        if r.len() != steps {
            return Err(BpttError::Invalid(format!(
                "sentences of one batch must have equal lengths ({} and {})",
                steps,
                r.len()
            )));
        }
        for (t, &id) in r.iter().enumerate() {
            ids[t * b + j] = id;
        }
    }
    Ok(ids)
}

// ---------------------------------------------------------------------------------------------
// Tasks and models
// ---------------------------------------------------------------------------------------------

/// What the models are trained on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Number prediction: the prefix before the verb, singular/plural at the last step.
    Number,
    /// Language model: the next token at every step of whole sentences.
    Lm,
}

/// Both tasks.
pub const ALL_TASKS: [Task; 2] = [Task::Number, Task::Lm];

impl Task {
    /// `number` or `lm`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Task::Number => "number",
            Task::Lm => "lm",
        }
    }
    /// The stream id.
    #[must_use]
    pub fn id(self) -> u64 {
        self as u64
    }
    /// The readout's outputs: 2 classes, or the vocabulary.
    #[must_use]
    pub fn outputs(self) -> usize {
        match self {
            Task::Number => 2,
            Task::Lm => VOCAB,
        }
    }
    /// Where the training loss reads the network.
    #[must_use]
    pub fn readout_at(self) -> ReadoutAt {
        match self {
            Task::Number => ReadoutAt::Last,
            Task::Lm => ReadoutAt::EveryStep,
        }
    }
    /// The class a model of this task should rank first at the verb position of `s`: the
    /// number (number prediction), or the verb in the subject's number (language model).
    #[must_use]
    pub fn target(self, s: &Sentence) -> usize {
        match self {
            Task::Number => s.number.class(),
            Task::Lm => verb(s.verb_lemma, s.number),
        }
    }
    /// Whether readout outputs `y` (one column, at the verb position) get `s` wrong:
    /// `P(correct number) ≤ P(other number)` (for the language model: of the sentence's verb).
    pub fn wrong<T: RealField + Copy>(self, y: &[T], s: &Sentence) -> bool {
        let (right, other) = match self {
            Task::Number => (s.number.class(), s.number.flip().class()),
            Task::Lm => (
                verb(s.verb_lemma, s.number),
                verb(s.verb_lemma, s.number.flip()),
            ),
        };
        // NaN and ties count as wrong
        y[right].partial_cmp(&y[other]) != Some(std::cmp::Ordering::Greater)
    }
}

impl FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_TASKS
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown task '{s}' (expected number or lm)"))
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a model's hidden size is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sizing {
    /// `--hidden` units.
    Hidden,
    /// The parameter count closest to the LSTM's at `--hidden` ([`matched_hidden`]).
    Params,
}

impl Sizing {
    /// `hidden` or `params`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Sizing::Hidden => "hidden",
            Sizing::Params => "params",
        }
    }
}

impl FromStr for Sizing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hidden" => Ok(Sizing::Hidden),
            "params" => Ok(Sizing::Params),
            _ => Err(format!("unknown sizing '{s}' (expected hidden or params)")),
        }
    }
}

/// The parameters of `cell` with `hidden` units on `task`: the cell's (one-hot inputs over the
/// vocabulary) and the readout's.
#[must_use]
pub fn parameter_count(cell: CellKind, task: Task, hidden: usize) -> (usize, usize) {
    let c = cell.zeros::<f64>(VOCAB, hidden).parameter_count();
    (c, (hidden + 1) * task.outputs())
}

/// The hidden size of `cell` whose total parameter count (cell + readout) on `task` is closest
/// to `target` (the smaller size on a tie).
#[must_use]
pub fn matched_hidden(cell: CellKind, task: Task, target: usize) -> usize {
    crate::experiment::closest_size(
        |h| {
            let (c, r) = parameter_count(cell, task, h);
            c + r
        },
        target,
    )
}

/// One model: a cell at a hidden size chosen by a sizing rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ModelSpec {
    pub cell: CellKind,
    pub sizing: Sizing,
    pub hidden: usize,
}

impl ModelSpec {
    /// `<cell>-<hidden>`, e.g. `rnn-tanh-118`.
    #[must_use]
    pub fn name(&self) -> String {
        format!("{}-{}", self.cell, self.hidden)
    }
}

/// The models of `task`: every cell at `hidden` units, then (with `params`) every cell but the
/// LSTM at the LSTM's parameter count.
#[must_use]
pub fn models(task: Task, cells: &[CellKind], hidden: usize, sizings: &[Sizing]) -> Vec<ModelSpec> {
    let (c, r) = parameter_count(CellKind::Lstm, task, hidden);
    let mut v = Vec::new();
    for &sizing in sizings {
        for &cell in cells {
            let h = match sizing {
                Sizing::Hidden => hidden,
                Sizing::Params if cell == CellKind::Lstm => continue,
                Sizing::Params => matched_hidden(cell, task, c + r),
            };
            v.push(ModelSpec {
                cell,
                sizing,
                hidden: h,
            });
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Training and measurement
// ---------------------------------------------------------------------------------------------

/// The first path component of every stream of this experiment.
pub const AGREEMENT: u64 = 0xA62E;

/// Hyper-parameters shared by every run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Hyper {
    /// The grammar's choices; each run's grammar is [`GrammarKind::apply`] of it.
    pub grammar: Grammar,
    /// Updates per run and sentences per batch.
    pub updates: u64,
    pub batch: usize,
    pub optimizer: Optimizer,
    /// Global-norm clipping threshold (`None`: none).
    pub clip: Option<f64>,
    /// Training batches have a distance uniform in `0..=train_max_distance` (one per batch)
    /// and up to `max_attractors` attractors ([`draw_attractors`]).
    pub train_max_distance: usize,
    pub max_attractors: usize,
    /// Log a curve point (with the probe) every this many updates.
    pub log_every: u64,
    /// The gradient probe: `probe_sentences` training-distribution sentences at
    /// `probe_distance`, fixed per run.
    pub probe_distance: usize,
    pub probe_sentences: usize,
    /// The test grid: `test_sentences` fresh sentences per (attractors 0..=max_attractors,
    /// distance in `test_distances` with distance ≥ 3·attractors).
    pub test_distances: Vec<usize>,
    pub test_sentences: usize,
    pub dtype: Dtype,
}

impl Hyper {
    /// The (attractors, distance) strata of the test grid, in order.
    #[must_use]
    pub fn strata(&self) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for a in 0..=self.max_attractors {
            for &d in &self.test_distances {
                if d >= min_distance(a) {
                    v.push((a, d));
                }
            }
        }
        v
    }
}

/// One training run: a grammar, a task, a model, a replicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunSpec {
    pub grammar: GrammarKind,
    pub task: Task,
    pub model: ModelSpec,
    pub replicate: u64,
}

/// The run's initial weights: the same for both grammars (paired: a model of the fixed and of
/// the preamble grammar start from the same weights).
fn weight_stream(spec: &RunSpec, seed: u64) -> Rng {
    let m = &spec.model;
    stream(
        seed,
        &[
            AGREEMENT,
            spec.task.id(),
            spec.replicate,
            0,
            m.cell.seed_id(),
            m.hidden as u64,
        ],
    )
}

/// The training batches (purpose 1) and the gradient probe (purpose 2) of `task`'s replicate
/// in `grammar`: the same for every model.
#[must_use]
pub fn data_stream(
    seed: u64,
    grammar: GrammarKind,
    task: Task,
    replicate: u64,
    purpose: u64,
) -> Rng {
    stream(
        seed,
        &[AGREEMENT, task.id(), replicate, purpose, grammar.id()],
    )
}

/// The test sentences of stratum (attractors, distance) of a replicate in `grammar`: the same
/// for every task and model (and the baselines).
#[must_use]
pub fn test_stream(
    seed: u64,
    grammar: GrammarKind,
    replicate: u64,
    attractors: usize,
    distance: usize,
) -> Rng {
    stream(
        seed,
        &[
            AGREEMENT,
            9,
            replicate,
            attractors as u64,
            distance as u64,
            grammar.id(),
        ],
    )
}

/// The test set of stratum (attractors, distance) of a replicate in `grammar`: preamble sizes
/// balanced ([`generate`]).
pub fn test_set(
    h: &Hyper,
    grammar: GrammarKind,
    seed: u64,
    replicate: u64,
    attractors: usize,
    distance: usize,
) -> Result<Vec<Sentence>, BpttError> {
    generate(
        &mut test_stream(seed, grammar, replicate, attractors, distance),
        &grammar.apply(&h.grammar),
        h.test_sentences,
        attractors,
        distance,
    )
}

/// One logged point of a learning curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    /// Updates done.
    pub update: u64,
    /// The update's training loss, its gradient norm before clipping, whether it was clipped.
    pub loss: f64,
    pub grad_norm: f64,
    pub clipped: bool,
    /// On the probe, at the current weights: the mean over its sentences of
    /// `‖∂ℓ_b/∂h_s‖₂` — `ℓ_b` the sentence's own cross-entropy at the verb position, `h_s` the
    /// hidden state right after reading the subject (for the LSTM the `h` half of `[h; c]`).
    pub subject_grad_norm: f64,
    /// The probe's mean cross-entropy at the verb position and its error rate.
    pub probe_loss: f64,
    pub probe_error: f64,
}

/// Errors of a trained model on one test stratum: the sentences of a test set with one
/// preamble size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StratumErrors {
    pub attractors: usize,
    pub distance: usize,
    /// Preamble nouns (0 in the fixed grammar).
    pub preamble: usize,
    pub sentences: usize,
    pub errors: usize,
}

/// What a run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub updates: u64,
    /// The parameters became non-finite: training stopped there.
    pub diverged: bool,
    pub curve: Vec<CurvePoint>,
    pub test: Vec<StratumErrors>,
}

/// The model of a run, drawn from its weight stream: the cell's PyTorch initialisation and a
/// readout from U(−1/√H, 1/√H).
pub fn build<T: RealField + Copy>(
    spec: &RunSpec,
    seed: u64,
) -> Result<NetworkModel<T, Unidirectional<AnyCell<T>>>, BpttError> {
    let mut rng = weight_stream(spec, seed);
    let h = spec.model.hidden;
    let cell: AnyCell<T> = spec.model.cell.pytorch_init(VOCAB, h, &mut rng);
    let readout = Readout::uniform(h, spec.task.outputs(), 1.0 / (h as f64).sqrt(), &mut rng);
    NetworkModel::new(Unidirectional::new(cell), readout)
}

/// Column `j` of `y` as a slice.
fn column<T: RealField + Copy>(y: &DMatrix<T>, j: usize) -> &[T] {
    let k = y.nrows();
    &y.as_slice()[j * k..(j + 1) * k]
}

/// A scalar's f64 value.
fn to_f64<T: RealField + Copy>(x: T) -> f64 {
    x.to_subset().unwrap_or(f64::NAN)
}

type Model<T> = NetworkModel<T, Unidirectional<AnyCell<T>>>;
type Net<T> = Unidirectional<AnyCell<T>>;

/// A trainer that reads the last step with a softmax over `task`'s outputs and records every
/// state gradient: what the probe and the tests run.
fn last_step_trainer<T: RealField + Copy>(
    model: &Model<T>,
) -> Result<Trainer<T, Net<T>>, BpttError> {
    let mut t = Trainer::new(
        model,
        trainer::Config {
            readout_at: ReadoutAt::Last,
            loss: Loss::SoftmaxCrossEntropy,
            clip: None,
            ..trainer::Config::default()
        },
    )?;
    t.workspace_mut().record_state_grads = true;
    Ok(t)
}

/// A part of the probe set with one preamble size (so one length), ready to run.
struct ProbeGroup {
    sentences: Vec<Sentence>,
    ids: Vec<usize>,
    targets: Vec<usize>,
}

/// The probe set split by preamble size (one group in the fixed grammar).
fn probe_groups(set: &[Sentence], task: Task) -> Result<Vec<ProbeGroup>, BpttError> {
    let mut sizes: Vec<usize> = set.iter().map(|s| s.preamble).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .into_iter()
        .map(|p| {
            let sentences: Vec<Sentence> =
                set.iter().filter(|s| s.preamble == p).cloned().collect();
            Ok(ProbeGroup {
                ids: columns(&sentences, Sentence::prefix)?,
                targets: sentences.iter().map(|s| task.target(s)).collect(),
                sentences,
            })
        })
        .collect()
}

/// The probe at the current weights, over its groups: (mean cross-entropy at the verb
/// position, error rate, mean `‖∂ℓ_b/∂h_s‖`), each a mean over all the probe's sentences.
fn probe<T: RealField + Copy>(
    tr: &mut Trainer<T, Net<T>>,
    model: &Model<T>,
    task: Task,
    groups: &[ProbeGroup],
) -> Result<(f64, f64, f64), BpttError> {
    let total: usize = groups.iter().map(|g| g.sentences.len()).sum();
    let (mut loss, mut error, mut norm) = (0.0, 0.0, 0.0);
    for g in groups {
        let (l, e, n) = probe_group(tr, model, task, &g.sentences, &g.ids, &g.targets)?;
        let w = g.sentences.len() as f64 / total as f64;
        loss += w * l;
        error += w * e;
        norm += w * n;
    }
    Ok((loss, error, norm))
}

/// [`probe`] on sentences of one length.
fn probe_group<T: RealField + Copy>(
    tr: &mut Trainer<T, Net<T>>,
    model: &Model<T>,
    task: Task,
    sentences: &[Sentence],
    ids: &[usize],
    targets: &[usize],
) -> Result<(f64, f64, f64), BpttError> {
    let b = sentences.len();
    let batch = Batch {
        inputs: Inputs::Tokens { ids, vocab: VOCAB },
        batch: b,
        targets: Targets::Classes(targets),
    };
    let loss = to_f64(tr.loss_and_grads(model, &batch)?);
    let y = tr.readout_outputs();
    let wrong = sentences
        .iter()
        .enumerate()
        .filter(|(j, s)| task.wrong(column(y, *j), s))
        .count();
    // ∂L/∂s at the state after the subject (s_{subject+1}); L is the batch mean, so the
    // sentence's own ∂ℓ_b/∂h is B times its column
    let hid = model.net.cell.hidden_size();
    let k = sentences[0].subject + 1;
    let ds = tr.workspace().tape.d_state(k);
    let mut norm = 0.0;
    if sentences.iter().any(|s| s.subject + 1 != k) {
        return Err(BpttError::Invalid(
            "a probe group's subjects must share one position".into(),
        ));
    }
    for j in 0..b {
        norm += ds.col(j)[..hid]
            .iter()
            .map(|&v| to_f64(v) * to_f64(v))
            .sum::<f64>()
            .sqrt();
    }
    Ok((loss, wrong as f64 / b as f64, norm))
}

/// Errors of `model` on `sentences` (one length), predicted in batches of at most 1000.
pub fn count_errors<T: RealField + Copy>(
    tr: &mut Trainer<T, Net<T>>,
    model: &Model<T>,
    task: Task,
    sentences: &[Sentence],
) -> Result<usize, BpttError> {
    let mut errors = 0;
    for part in sentences.chunks(1000) {
        let ids = columns(part, Sentence::prefix)?;
        let steps = ids.len() / part.len();
        tr.predict(
            model,
            Inputs::Tokens {
                ids: &ids,
                vocab: VOCAB,
            },
            part.len(),
            steps,
            &mut |_, y: &DMatrix<T>| {
                errors += part
                    .iter()
                    .enumerate()
                    .filter(|(j, s)| task.wrong(column(y, *j), s))
                    .count();
            },
        )?;
    }
    Ok(errors)
}

/// Train one run and test it on the stratified grid. The updates and the tests run in
/// `h.dtype`.
pub fn train(spec: &RunSpec, h: &Hyper, seed: u64) -> Result<Outcome, BpttError> {
    match h.dtype {
        Dtype::F64 => train_in::<f64>(spec, h, seed),
        Dtype::F32 => train_in::<f32>(spec, h, seed),
    }
}

fn train_in<T: RealField + Copy>(
    spec: &RunSpec,
    h: &Hyper,
    seed: u64,
) -> Result<Outcome, BpttError> {
    let task = spec.task;
    let grammar = spec.grammar.apply(&h.grammar);
    let mut model = build::<T>(spec, seed)?;
    let mut tr = Trainer::new(
        &model,
        trainer::Config {
            readout_at: task.readout_at(),
            loss: Loss::SoftmaxCrossEntropy,
            optimizer: h.optimizer,
            schedule: Schedule::Constant,
            clip: h.clip,
            safety_net: false,
            carry_state: false,
            omega: None,
        },
    )?;
    let mut eval = last_step_trainer(&model)?;
    // the probe: training-distribution sentences, preamble sizes balanced as in the tests
    let mut probe_rng = data_stream(seed, spec.grammar, task, spec.replicate, 2);
    let probe_set = (0..h.probe_sentences)
        .map(|i| {
            let a = draw_attractors(&mut probe_rng, h.max_attractors, h.probe_distance);
            let p = i % (grammar.max_preamble + 1);
            sentence_with(&mut probe_rng, &grammar, a, h.probe_distance, p)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let probe_set = probe_groups(&probe_set, task)?;
    let mut data = data_stream(seed, spec.grammar, task, spec.replicate, 1);
    let mut curve = Vec::new();
    let mut targets = Vec::new();
    let mut diverged = false;
    let mut n = 0;
    while n < h.updates {
        let d = data.random_range(0..=h.train_max_distance);
        // one preamble size per batch, like the distance (no draw in the fixed grammar)
        let p = if grammar.max_preamble == 0 {
            0
        } else {
            data.random_range(0..=grammar.max_preamble)
        };
        let batch = training_sentences(&mut data, &grammar, h.batch, h.max_attractors, d, p)?;
        let ids = match task {
            Task::Number => {
                targets.clear();
                targets.extend(batch.iter().map(|s| s.number.class()));
                columns(&batch, Sentence::prefix)?
            }
            Task::Lm => {
                // inputs: every token but the last; targets: every token but the first
                targets = columns(&batch, |s| &s.tokens[1..])?;
                columns(&batch, |s| &s.tokens[..s.tokens.len() - 1])?
            }
        };
        let rec = tr.update(
            &mut model,
            &Batch {
                inputs: Inputs::Tokens {
                    ids: &ids,
                    vocab: VOCAB,
                },
                batch: h.batch,
                targets: Targets::Classes(&targets),
            },
        )?;
        n += 1;
        let finite = model.net.cell.params().is_finite() && model.readout.params().is_finite();
        if n % h.log_every == 0 || n == h.updates || !finite {
            let (probe_loss, probe_error, subject_grad_norm) =
                probe(&mut eval, &model, task, &probe_set)?;
            curve.push(CurvePoint {
                update: n,
                loss: rec.loss,
                grad_norm: rec.grad_norm,
                clipped: rec.clipped,
                subject_grad_norm,
                probe_loss,
                probe_error,
            });
        }
        if !finite {
            diverged = true;
            break;
        }
    }
    let mut test = Vec::new();
    for (a, d) in h.strata() {
        let all = test_set(h, spec.grammar, seed, spec.replicate, a, d)?;
        for p in 0..=grammar.max_preamble {
            let set: Vec<Sentence> = all.iter().filter(|s| s.preamble == p).cloned().collect();
            if set.is_empty() {
                continue;
            }
            let errors = if diverged {
                set.len()
            } else {
                count_errors(&mut eval, &model, task, &set)?
            };
            test.push(StratumErrors {
                attractors: a,
                distance: d,
                preamble: p,
                sentences: set.len(),
                errors,
            });
        }
    }
    Ok(Outcome {
        updates: n,
        diverged,
        curve,
        test,
    })
}
