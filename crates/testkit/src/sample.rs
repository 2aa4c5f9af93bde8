//! A realistic sample database: a booking (appointment) app's schema and data.
//!
//! Rows are generated server-side (`INSERT ... SELECT ... FROM generate_series`) from
//! `random()` after a fixed `setseed`, so loading the same scale twice gives identical data,
//! while the data itself has realistic entropy (names, notes, JSON, bytes) rather than repeated
//! filler, which matters for compression benchmarks. Scale 1 is roughly 1.5 MB of plain
//! `pg_dump` output and size grows linearly (scale 300 is roughly 500 MB).

use anyhow::Context;

/// The tables [`load_sample_data`] creates, as `schema.table`.
pub const SAMPLE_TABLES: &[&str] = &[
    "public.appointments",
    "public.businesses",
    "public.customers",
    "public.payments",
    "public.reviews",
    "public.services",
    "public.staff",
    "reporting.Daily Stats",
];

const FIRST_NAMES: &[&str] = &[
    "Ayşe",
    "Mehmet",
    "Fatma",
    "Mustafa",
    "Emine",
    "Ahmet",
    "Hatice",
    "Ali",
    "Zeynep",
    "Hüseyin",
    "Elif",
    "Hasan",
    "Merve",
    "İbrahim",
    "Özge",
    "Şükrü",
    "Gülşen",
    "Çağla",
    "Ümit",
    "Öznur",
    "Ömer",
    "Büşra",
    "Yusuf",
    "Şeyma",
    "İrem",
    "Barış",
    "Gökhan",
    "Ebru",
    "Deniz",
    "Can",
    "Selin",
    "Burak",
    "Nur",
    "Cem",
    "Dilek",
    "Emre",
    "Aslı",
    "Kübra",
    "Tuğba",
    "Onur",
    "John",
    "María",
    "José",
    "Zoë",
    "François",
    "Søren",
    "Анна",
    "Дмитрий",
    "فاطمة",
    "محمد",
    "美咲",
    "翔太",
    "王芳",
    "李伟",
    "민준",
    "서연",
];

const LAST_NAMES: &[&str] = &[
    "Yılmaz",
    "Kaya",
    "Demir",
    "Şahin",
    "Çelik",
    "Yıldız",
    "Yıldırım",
    "Öztürk",
    "Aydın",
    "Özdemir",
    "Arslan",
    "Doğan",
    "Kılıç",
    "Aslan",
    "Çetin",
    "Kara",
    "Koç",
    "Kurt",
    "Özkan",
    "Şimşek",
    "Polat",
    "Erdoğan",
    "Güneş",
    "Akgül",
    "Bulut",
    "Korkmaz",
    "Uçar",
    "Ağaoğlu",
    "Smith",
    "García",
    "Müller",
    "Dubois",
    "Иванова",
    "田中",
    "佐藤",
    "김",
    "Nguyễn",
];

const CITIES: &[&str] = &[
    "İstanbul",
    "Ankara",
    "İzmir",
    "Bursa",
    "Antalya",
    "Eskişehir",
    "Trabzon",
    "Gaziantep",
    "Kayseri",
    "Muğla",
    "Çanakkale",
    "Diyarbakır",
    "Şanlıurfa",
    "Berlin",
    "London",
    "東京",
];

const BUSINESS_WORDS: &[&str] = &[
    "Işıltı",
    "Güzellik",
    "Salonu",
    "Kuaför",
    "Berber",
    "Stüdyo",
    "Merkezi",
    "Klinik",
    "Spa",
    "Diş",
    "Veteriner",
    "Fizyoterapi",
    "Pilates",
    "Yoga",
    "Masaj",
    "Tırnak",
    "Estetik",
    "Atölye",
    "Moda",
    "Lale",
    "Papatya",
    "Gül",
    "Çınar",
    "Deniz",
    "Güneş",
    "Ay",
    "Yıldız",
    "Elit",
    "Nova",
];

const SERVICE_NAMES: &[&str] = &[
    "Saç Kesimi",
    "Fön",
    "Boya",
    "Röfle",
    "Keratin Bakımı",
    "Sakal Tıraşı",
    "Manikür",
    "Pedikür",
    "Kaş Alımı",
    "Cilt Bakımı",
    "Masaj (60 dk)",
    "Masaj (90 dk)",
    "Diş Kontrolü",
    "Diş Taşı Temizliği",
    "Aşı",
    "Tüy Kesimi",
    "Fizik Tedavi Seansı",
    "Pilates Dersi",
    "Yoga Dersi",
    "Danışmanlık",
    "Makyaj",
    "Gelin Başı",
    "Protez Tırnak",
    "Lazer Epilasyon",
];

const CATEGORIES: &[&str] = &[
    "saç",
    "bakım",
    "tırnak",
    "sağlık",
    "spor",
    "danışmanlık",
    "güzellik",
    "evcil hayvan",
];

const NOTE_WORDS: &[&str] = &[
    "müşteri",
    "randevu",
    "erken",
    "geç",
    "geldi",
    "gelmedi",
    "aradı",
    "iptal",
    "ertelendi",
    "lütfen",
    "hatırlatma",
    "gönderildi",
    "alerjisi",
    "var",
    "yok",
    "kısa",
    "uzun",
    "boya",
    "rengi",
    "koyu",
    "açık",
    "kahverengi",
    "sarı",
    "memnun",
    "değil",
    "çok",
    "güzel",
    "teşekkür",
    "ederim",
    "ödeme",
    "nakit",
    "kart",
    "indirim",
    "kampanya",
    "öğrenci",
    "yaşlı",
    "çocuk",
    "ile",
    "birlikte",
    "geldi",
    "park",
    "yeri",
    "sorun",
    "şikayet",
    "tekrar",
    "gelecek",
    "hafta",
    "ay",
    "sonra",
    "önce",
    "sabah",
    "öğleden",
    "akşam",
    "VIP",
    "new",
    "customer",
    "prefers",
    "quiet",
    "room",
    "coffee",
    "no",
    "sugar",
    "🙂",
    "👍",
    "✨",
    "💇‍♀️",
    "💅",
    "🐶",
    "📅",
    "⭐",
    "予約",
    "確認",
    "ありがとう",
    "很好",
    "谢谢",
    "다시",
    "감사합니다",
    "«ok»",
    "50%",
    "'quoted'",
    "back\\slash",
    "tab\there",
    "\"dq\"",
];

const REVIEW_WORDS: &[&str] = &[
    "harika",
    "mükemmel",
    "çok",
    "memnun",
    "kaldım",
    "tavsiye",
    "ederim",
    "berbat",
    "bir",
    "daha",
    "asla",
    "güler",
    "yüzlü",
    "personel",
    "temiz",
    "ortam",
    "fiyat",
    "pahalı",
    "uygun",
    "zamanında",
    "bekledim",
    "dakika",
    "saç",
    "tırnak",
    "great",
    "service",
    "friendly",
    "staff",
    "will",
    "come",
    "again",
    "😍",
    "😡",
    "👏",
    "💯",
    "🙏",
    "素晴らしい",
    "很满意",
    "최고",
];

const TAGS: &[&str] = &[
    "vip",
    "yeni",
    "sadık",
    "öğrenci",
    "kurumsal",
    "instagram",
    "tavsiye",
    "online",
    "walk-in",
    "çocuk",
    "engelli-erişimi",
    "yabancı",
];

const LANGUAGES: &[&str] = &["tr", "en", "de", "ar", "ru", "ja", "zh", "ko"];

const EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "hotmail.com",
    "yahoo.com",
    "outlook.com",
    "icloud.com",
    "yandex.com.tr",
    "example.org",
];

const TITLES: &[&str] = &[
    "Kuaför",
    "Stilist",
    "Uzman",
    "Diş Hekimi",
    "Veteriner Hekim",
    "Fizyoterapist",
    "Eğitmen",
    "Estetisyen",
    "Asistan",
    "Stajyer",
];

const PAYMENT_METHODS: &[&str] = &["card", "cash", "transfer", "wallet"];

/// An SQL `text[]` literal.
fn sql_array(words: &[&str]) -> String {
    let items: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "''")))
        .collect();
    format!("ARRAY[{}]::text[]", items.join(", "))
}

const HELPERS: &str = r#"
SET max_parallel_workers_per_gather = 0;
SET extra_float_digits = 1;
SET TimeZone = 'UTC';
CREATE FUNCTION pg_temp.pick(a text[]) RETURNS text LANGUAGE sql VOLATILE
    AS $$ SELECT a[1 + floor(random() * cardinality(a))::int] $$;
CREATE FUNCTION pg_temp.words(a text[], n integer) RETURNS text LANGUAGE sql VOLATILE
    AS $$ SELECT string_agg(a[1 + floor(random() * cardinality(a))::int], ' ')
          FROM generate_series(1, n) $$;
CREATE FUNCTION pg_temp.random_bytes(blocks integer) RETURNS bytea LANGUAGE sql VOLATILE
    AS $$ SELECT decode(string_agg(md5(random()::text), ''), 'hex')
          FROM generate_series(1, blocks) $$;
CREATE FUNCTION pg_temp.ascii_name(s text) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT regexp_replace(translate(lower(s), 'çğıöşüâîûéèñøóíá ', 'cgiosuaiueenooia.'),
                                '[^a-z0-9.]', '', 'g') $$;
"#;

const SCHEMA: &str = r#"
CREATE SCHEMA reporting;
COMMENT ON SCHEMA reporting IS 'Aggregates for dashboards';
CREATE TYPE appointment_status AS ENUM ('pending', 'confirmed', 'completed', 'cancelled', 'no_show');
CREATE SEQUENCE invoice_number_seq START WITH 100000;

CREATE TABLE businesses (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    name text NOT NULL,
    slug text NOT NULL,
    city text NOT NULL,
    address text,
    phone text,
    timezone text NOT NULL DEFAULT 'Europe/Istanbul',
    settings jsonb NOT NULL DEFAULT '{}',
    tags text[] NOT NULL DEFAULT '{}',
    rating numeric(3,2),
    is_active boolean NOT NULL DEFAULT true,
    logo bytea,
    opened_on date,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE businesses IS 'İşletmeler — salons, clinics, studios';

CREATE TABLE staff (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    business_id bigint NOT NULL,
    full_name text NOT NULL,
    email text,
    phone text,
    title text,
    working_days smallint[] NOT NULL,
    hourly_rate numeric(12,2),
    bio text,
    hired_on date NOT NULL,
    is_active boolean NOT NULL DEFAULT true
);

CREATE TABLE services (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    business_id bigint NOT NULL,
    name text NOT NULL,
    description text,
    category text NOT NULL,
    duration_minutes integer NOT NULL CHECK (duration_minutes > 0),
    price numeric(12,2) NOT NULL CHECK (price >= 0),
    currency char(3) NOT NULL DEFAULT 'TRY',
    is_online boolean NOT NULL DEFAULT false,
    metadata jsonb
);

CREATE TABLE customers (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    business_id bigint NOT NULL,
    full_name text NOT NULL,
    email text,
    phone text NOT NULL,
    birth_date date,
    notes text,
    preferences jsonb NOT NULL DEFAULT '{}',
    tags text[],
    marketing_opt_in boolean NOT NULL DEFAULT false,
    avatar bytea,
    created_at timestamptz NOT NULL
);

CREATE TABLE appointments (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    business_id bigint NOT NULL,
    customer_id bigint NOT NULL,
    staff_id bigint NOT NULL,
    service_id bigint NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    status appointment_status NOT NULL,
    price numeric(12,2) NOT NULL,
    notes text,
    reminder_sent boolean NOT NULL,
    created_at timestamptz NOT NULL,
    CHECK (ends_at > starts_at)
);

CREATE TABLE payments (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    appointment_id bigint NOT NULL,
    invoice_no bigint NOT NULL DEFAULT nextval('invoice_number_seq'),
    amount numeric(12,2) NOT NULL,
    currency char(3) NOT NULL,
    method text NOT NULL CHECK (method IN ('card', 'cash', 'transfer', 'wallet')),
    paid_at timestamptz,
    provider_response jsonb,
    refunded boolean NOT NULL DEFAULT false
);
ALTER SEQUENCE invoice_number_seq OWNED BY payments.invoice_no;

CREATE TABLE reviews (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    appointment_id bigint NOT NULL,
    rating smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment text,
    created_at timestamptz NOT NULL
);

CREATE TABLE reporting."Daily Stats" (
    business_id bigint NOT NULL,
    day date NOT NULL,
    appointments integer NOT NULL,
    revenue numeric(12,2) NOT NULL
);
"#;

/// Data generation; `@B@` is the number of businesses, the rest are vocabularies.
const DATA: &str = r#"
SELECT setseed(0.11);
INSERT INTO businesses (id, name, slug, city, address, phone, timezone, settings, tags, rating,
                        is_active, logo, opened_on, created_at)
SELECT i, n, pg_temp.ascii_name(n) || '-' || i, city,
       CASE WHEN random() < 0.1 THEN NULL
            ELSE pg_temp.pick(@BUSINESS@) || ' Sok. No:' || (1 + floor(random() * 200)::int) || ', ' || city END,
       '+90 ' || (200 + floor(random() * 300)::int) || ' ' || lpad(floor(random() * 10000000)::int::text, 7, '0'),
       CASE WHEN random() < 0.9 THEN 'Europe/Istanbul' ELSE 'Europe/Berlin' END,
       jsonb_build_object(
           'booking_window_days', 7 + floor(random() * 60)::int,
           'cancellation_hours', (ARRAY[2, 6, 12, 24, 48])[1 + floor(random() * 5)::int],
           'sms_reminders', random() < 0.7,
           'languages', to_jsonb(ARRAY[pg_temp.pick(@LANG@), pg_temp.pick(@LANG@)]),
           'theme', jsonb_build_object('color', '#' || substr(md5(random()::text), 1, 6),
                                       'dark', random() < 0.3),
           'opening_hours', jsonb_build_object('weekdays', '09:00-19:00',
                                               'saturday', CASE WHEN random() < 0.8 THEN '10:00-17:00' END)),
       ARRAY[pg_temp.pick(@TAGS@), pg_temp.pick(@TAGS@)],
       CASE WHEN random() < 0.15 THEN NULL ELSE round((2.5 + random() * 2.5)::numeric, 2) END,
       random() < 0.95,
       CASE WHEN random() < 0.3 THEN NULL ELSE pg_temp.random_bytes(16 + floor(random() * 48)::int) END,
       date '2005-01-01' + floor(random() * 6500)::int,
       timestamptz '2019-01-01 00:00:00+00' + random() * interval '1500 days'
FROM (SELECT i, pg_temp.pick(@BUSINESS@) || ' ' || pg_temp.pick(@BUSINESS@) AS n,
             pg_temp.pick(@CITIES@) AS city
      FROM generate_series(1, @B@) AS i) AS g;

SELECT setseed(0.22);
INSERT INTO staff (id, business_id, full_name, email, phone, title, working_days, hourly_rate,
                   bio, hired_on, is_active)
SELECT i, 1 + (i - 1) % @B@, n,
       CASE WHEN random() < 0.2 THEN NULL
            ELSE pg_temp.ascii_name(n) || i || '@' || pg_temp.pick(@DOMAINS@) END,
       '+90 5' || lpad(floor(random() * 1000000000)::bigint::text, 9, '0'),
       pg_temp.pick(@TITLES@),
       (SELECT array_agg(d ORDER BY d) FROM generate_series(1, 7) AS d
         WHERE d <= 5 + (i % 3) - 1 OR random() < 0.1)::smallint[],
       CASE WHEN random() < 0.1 THEN NULL ELSE round((150 + random() * 850)::numeric, 2) END,
       CASE WHEN random() < 0.4 THEN NULL ELSE pg_temp.words(@NOTES@, 8 + floor(random() * 25)::int) END,
       date '2015-01-01' + floor(random() * 3000)::int,
       random() < 0.9
FROM (SELECT i, pg_temp.pick(@FIRST@) || ' ' || pg_temp.pick(@LAST@) AS n
      FROM generate_series(1, @B@ * 5) AS i) AS g;

SELECT setseed(0.33);
INSERT INTO services (id, business_id, name, description, category, duration_minutes, price,
                      currency, is_online, metadata)
SELECT i, 1 + (i - 1) % @B@, pg_temp.pick(@SERVICES@),
       CASE WHEN random() < 0.3 THEN NULL ELSE pg_temp.words(@NOTES@, 5 + floor(random() * 20)::int) END,
       pg_temp.pick(@CATEGORIES@),
       (ARRAY[15, 20, 30, 45, 60, 90, 120])[1 + floor(random() * 7)::int],
       round((50 + random() * 2950)::numeric, 2),
       CASE WHEN random() < 0.93 THEN 'TRY' WHEN random() < 0.5 THEN 'EUR' ELSE 'USD' END,
       random() < 0.1,
       CASE WHEN random() < 0.5 THEN NULL
            ELSE jsonb_build_object('color', '#' || substr(md5(random()::text), 1, 6),
                                    'requires_deposit', random() < 0.2,
                                    'max_per_day', 1 + floor(random() * 20)::int) END
FROM generate_series(1, @B@ * 12) AS i;

SELECT setseed(0.44);
INSERT INTO customers (id, business_id, full_name, email, phone, birth_date, notes, preferences,
                       tags, marketing_opt_in, avatar, created_at)
SELECT i, 1 + (i - 1) % @B@, n,
       CASE WHEN random() < 0.15 THEN NULL
            ELSE pg_temp.ascii_name(n) || i || '@' || pg_temp.pick(@DOMAINS@) END,
       '+90 5' || lpad(floor(random() * 1000000000)::bigint::text, 9, '0'),
       CASE WHEN random() < 0.3 THEN NULL ELSE date '1950-01-01' + floor(random() * 20000)::int END,
       CASE WHEN random() < 0.6 THEN NULL ELSE pg_temp.words(@NOTES@, 3 + floor(random() * 12)::int) END,
       jsonb_build_object('language', pg_temp.pick(@LANG@),
                          'reminder_minutes', (ARRAY[30, 60, 120, 1440])[1 + floor(random() * 4)::int],
                          'channels', CASE WHEN random() < 0.5 THEN '["sms"]'::jsonb
                                           ELSE '["sms", "email", "push"]'::jsonb END,
                          'favorite_staff', CASE WHEN random() < 0.3 THEN floor(random() * 5)::int END),
       CASE WHEN random() < 0.5 THEN NULL
            WHEN random() < 0.5 THEN ARRAY[pg_temp.pick(@TAGS@)]
            ELSE ARRAY[pg_temp.pick(@TAGS@), pg_temp.pick(@TAGS@)] END,
       random() < 0.4,
       CASE WHEN random() < 0.85 THEN NULL ELSE pg_temp.random_bytes(2 + floor(random() * 6)::int) END,
       timestamptz '2020-01-01 00:00:00+00' + random() * interval '1400 days'
FROM (SELECT i, pg_temp.pick(@FIRST@) || ' ' || pg_temp.pick(@LAST@) AS n
      FROM generate_series(1, @B@ * 150) AS i) AS g;

SELECT setseed(0.55);
INSERT INTO appointments (id, business_id, customer_id, staff_id, service_id, starts_at, ends_at,
                          status, price, notes, reminder_sent, created_at)
SELECT i, b, b + @B@ * floor(random() * 150)::bigint, b + @B@ * floor(random() * 5)::bigint,
       b + @B@ * floor(random() * 12)::bigint, s, s + d * interval '1 minute',
       CASE WHEN s > timestamptz '2024-06-01 00:00:00+00'
                 THEN (ARRAY['pending', 'confirmed', 'confirmed', 'cancelled'])[1 + floor(random() * 4)::int]
            ELSE (ARRAY['completed', 'completed', 'completed', 'completed', 'cancelled', 'no_show'])[1 + floor(random() * 6)::int]
       END::appointment_status,
       round((50 + random() * 2950)::numeric, 2),
       CASE WHEN random() < 0.55 THEN NULL ELSE pg_temp.words(@NOTES@, 2 + floor(random() * 14)::int) END,
       random() < 0.8,
       s - random() * interval '30 days'
FROM (SELECT i, 1 + (i - 1) % @B@ AS b,
             date_trunc('hour', timestamptz '2022-06-01 06:00:00+00' + random() * interval '760 days')
                 + floor(random() * 12) * interval '5 minutes' AS s,
             (ARRAY[15, 20, 30, 45, 60, 90, 120])[1 + floor(random() * 7)::int] AS d
      FROM generate_series(1, @B@ * 400) AS i) AS g;

SELECT setseed(0.66);
INSERT INTO payments (id, appointment_id, amount, currency, method, paid_at, provider_response,
                      refunded)
SELECT p, a, round((50 + random() * 2950)::numeric, 2),
       CASE WHEN random() < 0.95 THEN 'TRY' ELSE 'EUR' END,
       pg_temp.pick(@METHODS@),
       CASE WHEN random() < 0.05 THEN NULL
            ELSE timestamptz '2022-06-01 00:00:00+00' + random() * interval '760 days' END,
       CASE WHEN random() < 0.3 THEN NULL
            ELSE jsonb_build_object('provider', CASE WHEN random() < 0.7 THEN 'iyzico' ELSE 'stripe' END,
                                    'transaction_id', md5(random()::text),
                                    'installments', 1 + floor(random() * 6)::int,
                                    'card', jsonb_build_object('last4', lpad(floor(random() * 10000)::int::text, 4, '0'),
                                                               'brand', CASE WHEN random() < 0.6 THEN 'visa' ELSE 'mastercard' END),
                                    'fraud_score', round(random()::numeric, 4)) END,
       random() < 0.03
FROM (SELECT row_number() OVER (ORDER BY a) AS p, a
      FROM generate_series(1, @B@ * 400) AS a WHERE a % 10 < 7) AS g
ORDER BY p;

SELECT setseed(0.77);
INSERT INTO reviews (id, appointment_id, rating, comment, created_at)
SELECT r, a, 1 + floor(random() * 5)::int,
       CASE WHEN random() < 0.2 THEN NULL ELSE pg_temp.words(@REVIEWS@, 3 + floor(random() * 20)::int) END,
       timestamptz '2022-06-01 00:00:00+00' + random() * interval '800 days'
FROM (SELECT row_number() OVER (ORDER BY a) AS r, a
      FROM generate_series(1, @B@ * 400) AS a WHERE a % 5 = 2) AS g
ORDER BY r;

INSERT INTO reporting."Daily Stats" (business_id, day, appointments, revenue)
SELECT business_id, (starts_at AT TIME ZONE 'UTC')::date, count(*), sum(price)
FROM appointments WHERE status = 'completed'
GROUP BY 1, 2;

SELECT setval(pg_get_serial_sequence('businesses', 'id'), @B@);
SELECT setval(pg_get_serial_sequence('staff', 'id'), @B@ * 5);
SELECT setval(pg_get_serial_sequence('services', 'id'), @B@ * 12);
SELECT setval(pg_get_serial_sequence('customers', 'id'), @B@ * 150);
SELECT setval(pg_get_serial_sequence('appointments', 'id'), @B@ * 400);
SELECT setval(pg_get_serial_sequence('payments', 'id'), (SELECT max(id) FROM payments));
SELECT setval(pg_get_serial_sequence('reviews', 'id'), (SELECT max(id) FROM reviews));
"#;

/// Constraints, indexes, a view and a function, added after the data for speed.
const CONSTRAINTS: &str = r#"
ALTER TABLE businesses ADD PRIMARY KEY (id), ADD UNIQUE (slug);
ALTER TABLE staff ADD PRIMARY KEY (id),
    ADD FOREIGN KEY (business_id) REFERENCES businesses (id) ON DELETE CASCADE;
ALTER TABLE services ADD PRIMARY KEY (id),
    ADD FOREIGN KEY (business_id) REFERENCES businesses (id) ON DELETE CASCADE;
ALTER TABLE customers ADD PRIMARY KEY (id),
    ADD FOREIGN KEY (business_id) REFERENCES businesses (id) ON DELETE CASCADE;
ALTER TABLE appointments ADD PRIMARY KEY (id),
    ADD FOREIGN KEY (business_id) REFERENCES businesses (id),
    ADD FOREIGN KEY (customer_id) REFERENCES customers (id),
    ADD FOREIGN KEY (staff_id) REFERENCES staff (id),
    ADD FOREIGN KEY (service_id) REFERENCES services (id);
ALTER TABLE payments ADD PRIMARY KEY (id), ADD UNIQUE (invoice_no),
    ADD FOREIGN KEY (appointment_id) REFERENCES appointments (id);
ALTER TABLE reviews ADD PRIMARY KEY (id), ADD UNIQUE (appointment_id),
    ADD FOREIGN KEY (appointment_id) REFERENCES appointments (id);
ALTER TABLE reporting."Daily Stats" ADD PRIMARY KEY (business_id, day),
    ADD FOREIGN KEY (business_id) REFERENCES businesses (id);

CREATE INDEX appointments_business_starts_idx ON appointments (business_id, starts_at);
CREATE INDEX appointments_customer_idx ON appointments (customer_id);
CREATE INDEX appointments_open_idx ON appointments (starts_at)
    WHERE status IN ('pending', 'confirmed');
CREATE INDEX customers_email_idx ON customers (lower(email));
CREATE INDEX customers_tags_idx ON customers USING gin (tags);
CREATE INDEX payments_paid_at_idx ON payments (paid_at) WHERE paid_at IS NOT NULL;
CREATE INDEX businesses_settings_idx ON businesses USING gin (settings jsonb_path_ops);

CREATE VIEW upcoming_appointments AS
    SELECT a.id, b.name AS business, c.full_name AS customer, s.name AS service,
           st.full_name AS staff, a.starts_at, a.ends_at, a.status
    FROM appointments a
    JOIN businesses b ON b.id = a.business_id
    JOIN customers c ON c.id = a.customer_id
    JOIN services s ON s.id = a.service_id
    JOIN staff st ON st.id = a.staff_id
    WHERE a.status IN ('pending', 'confirmed');

CREATE FUNCTION business_revenue(p_business bigint, p_from timestamptz, p_to timestamptz)
    RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(p.amount), 0)
    FROM payments p JOIN appointments a ON a.id = p.appointment_id
    WHERE a.business_id = p_business AND p.paid_at >= p_from AND p.paid_at < p_to
      AND NOT p.refunded
$$;
COMMENT ON FUNCTION business_revenue(bigint, timestamptz, timestamptz) IS 'Gelir — revenue in a period';

ANALYZE;
"#;

/// Creates the sample booking-app schema in the (empty) database `client` is connected to and
/// fills it with deterministic, realistic data; `scale` 1 is about 1.5 MB of plain dump (10
/// businesses, 1 500 customers, 4 000 appointments, ...) and size grows linearly.
///
/// The schema has tables in two schemas (one with a quoted mixed-case name), foreign keys,
/// unique and partial indexes, a GIN index, a view, an enum type, a SQL function, an identity
/// column per table and a separately owned sequence; the data has text in Turkish, other
/// scripts and emoji, jsonb, timestamptz, date, numeric(12,2), bytea, boolean, arrays and NULLs.
///
/// # Errors
/// When a statement fails, e.g. the schema exists already.
pub async fn load_sample_data(client: &tokio_postgres::Client, scale: u32) -> anyhow::Result<()> {
    let scale = scale.max(1);
    let businesses = u64::from(scale) * 10;
    let data = DATA
        .replace("@B@", &businesses.to_string())
        .replace("@FIRST@", &sql_array(FIRST_NAMES))
        .replace("@LAST@", &sql_array(LAST_NAMES))
        .replace("@CITIES@", &sql_array(CITIES))
        .replace("@BUSINESS@", &sql_array(BUSINESS_WORDS))
        .replace("@SERVICES@", &sql_array(SERVICE_NAMES))
        .replace("@CATEGORIES@", &sql_array(CATEGORIES))
        .replace("@NOTES@", &sql_array(NOTE_WORDS))
        .replace("@REVIEWS@", &sql_array(REVIEW_WORDS))
        .replace("@TAGS@", &sql_array(TAGS))
        .replace("@LANG@", &sql_array(LANGUAGES))
        .replace("@DOMAINS@", &sql_array(EMAIL_DOMAINS))
        .replace("@TITLES@", &sql_array(TITLES))
        .replace("@METHODS@", &sql_array(PAYMENT_METHODS));
    for (what, sql) in [
        ("helper functions", HELPERS),
        ("schema", SCHEMA),
        ("data", data.as_str()),
        ("constraints and indexes", CONSTRAINTS),
    ] {
        // Blank lines separate steps; run them one by one to time them.
        for step in sql.split("\n\n").filter(|s| !s.trim().is_empty()) {
            let started = std::time::Instant::now();
            client
                .batch_execute(step)
                .await
                .with_context(|| format!("loading sample data: {what}"))?;
            let first_line = step.trim().lines().next().unwrap_or_default();
            tracing::debug!(elapsed = ?started.elapsed(), "sample data step {what}: {first_line}");
        }
    }
    // The helpers live in pg_temp and vanish with the session; reset what HELPERS set.
    client
        .batch_execute(
            "RESET max_parallel_workers_per_gather; RESET extra_float_digits; RESET TimeZone;",
        )
        .await
        .context("resetting session settings")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_escape_quotes() {
        assert_eq!(sql_array(&["a'b", "c"]), "ARRAY['a''b', 'c']::text[]");
    }
}
