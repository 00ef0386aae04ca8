//! Hostile guest: a perfectly good component of another world (it exports `greet`, not
//! `evaluate`): it must be refused with a clear error.

wit_bindgen::generate!({
    inline: "
        package example:greeter@1.0.0;
        world greeter {
            export greet: func(name: string) -> string;
        }
    ",
});

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello {name}")
    }
}

export!(Greeter);
