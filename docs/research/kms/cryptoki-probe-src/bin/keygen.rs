//! Generate a non-extractable AES-256 token key from code (what an `init` test fixture would do).
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pkcs11 = Pkcs11::new("/usr/lib/softhsm/libsofthsm2.so")?;
    pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = pkcs11
        .get_slots_with_token()?
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).map(|t| t.label() == "keyward").unwrap_or(false))
        .ok_or("no token")?;
    let s = pkcs11.open_rw_session(slot)?;
    s.login(UserType::User, Some(&AuthPin::new("1234".into())))?;
    let h = s.generate_key(&Mechanism::AesKeyGen, &[
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::ValueLen(32.into()),
        Attribute::Label(b"kek-from-code".to_vec()),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
    ])?;
    println!("generated {h:?}");
    // Opening a RO session while logged in on a RW one: login state is per application (per token).
    let ro = pkcs11.open_ro_session(slot)?;
    match ro.login(UserType::User, Some(&AuthPin::new("1234".into()))) {
        Ok(()) => println!("second login ok"),
        Err(e) => println!("second login on another session -> {e:?}"),
    }
    Ok(())
}
