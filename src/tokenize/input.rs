//! What to feed a model: text to tokenize, or tokens or ids to use as they are. Token input
//! files (`.txt`, `{"text": …}`, `{"tokens": […]}`, `{"token_ids": […]}`) are read into it by
//! `io::load_input`; the model turns it into [`super::Token`]s.

/// What to feed a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenInput {
    /// Text, to be tokenized.
    Text(String),
    /// Token texts, used as they are.
    Tokens(Vec<String>),
    /// Token ids, used as they are.
    Ids(Vec<u32>),
}
