mod outer {
    pub mod inner {
        #[taskflow::task]
        pub fn nested(a: i64) -> i64 {
            a + 1
        }
    }
}

mod bare {
    #![no_implicit_prelude]

    #[::taskflow::task]
    pub fn shout(text: ::std::string::String, times: ::std::option::Option<u32>) -> ::std::string::String {
        let mut out = ::std::string::String::new();
        for _ in 0..times.unwrap_or(1) {
            out.push_str(&text);
        }
        out
    }

    use ::taskflow::task;

    #[task]
    pub async fn quiet() -> ::std::vec::Vec<u8> {
        ::std::vec::Vec::new()
    }
}

fn main() {
    assert_eq!(outer::inner::nested(1), 2);
    assert_eq!(bare::shout("hi".to_owned(), Some(2)), "hihi");
    let _ = bare::quiet();

    let nested = taskflow::task_def("nested").expect("`nested` is registered");
    assert!(nested.module_path().ends_with("outer::inner"), "{}", nested.module_path());
    assert!(taskflow::task_def("shout").is_some());
    assert!(taskflow::task_def("quiet").is_some());
}
