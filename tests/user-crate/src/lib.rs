//! A user's crate with `taskflow` as its only dependency: tasks in nested
//! modules, argument types through the re-exported `serde` and `schemars`,
//! and a module without the implicit prelude.

/// Tasks about text.
pub mod text {
    /// Tasks about words.
    pub mod words {
        use taskflow::schemars::JsonSchema;
        use taskflow::serde::Deserialize;

        /// How to change the case of a word.
        #[derive(Debug, Deserialize, JsonSchema)]
        #[serde(crate = "taskflow::serde")]
        #[schemars(crate = "taskflow::schemars")]
        pub enum Case {
            /// UPPER
            Upper,
            /// lower
            Lower,
        }

        /// Change the case of a word
        #[taskflow::task]
        pub fn change_case(word: String, case: Case) -> String {
            match case {
                Case::Upper => word.to_uppercase(),
                Case::Lower => word.to_lowercase(),
            }
        }

        /// Count the words of a text
        #[taskflow::task(title = "user.count_words")]
        pub(crate) async fn count_words(text: String) -> usize {
            text.split_whitespace().count()
        }

        /// Calls the crate-private task, to show its visibility is kept.
        pub async fn count_words_publicly(text: String) -> usize {
            count_words(text).await
        }
    }
}

/// A module that sees nothing but what it names.
#[allow(unused_qualifications)]
pub mod bare {
    #![no_implicit_prelude]

    /// Sum a list of numbers
    #[::taskflow::task(tags = ["math"])]
    pub fn sum(numbers: ::std::vec::Vec<i64>, start: ::std::option::Option<i64>) -> i64 {
        let mut total = start.unwrap_or(0);
        for n in numbers {
            total += n;
        }
        total
    }
}
