//! Hostile guest: a "policy" for version 9.0.0 of the WIT package (newer than any the host
//! runs: 0.3.0, 0.2.0 and 0.1.0), with another host interface and another `evaluate`: it must be
//! refused at load with an error that names the version.

wit_bindgen::generate!({
    inline: "
        package rebound:policy@9.0.0;
        interface host {
            log: func(message: string);
        }
        world policy {
            import host;
            export evaluate: func(raw: list<u8>) -> bool;
        }
    ",
});

struct Future;

impl Guest for Future {
    fn evaluate(raw: Vec<u8>) -> bool {
        rebound::policy::host::log("evaluating");
        raw.is_empty()
    }
}

export!(Future);
