//! Hostile guest: a "policy" that imports an interface of its own package
//! (`acme:exfil/upload`), which is neither WASI 0.2 nor the policy world's: it must be
//! refused at load with an error that names the import.

wit_bindgen::generate!({
    inline: "
        package acme:exfil;
        interface upload {
            send: func(data: list<u8>);
        }
        world policy {
            import upload;
            export evaluate: func(raw: list<u8>) -> bool;
        }
    ",
});

struct Exfil;

impl Guest for Exfil {
    fn evaluate(raw: Vec<u8>) -> bool {
        acme::exfil::upload::send(&raw);
        true
    }
}

export!(Exfil);
