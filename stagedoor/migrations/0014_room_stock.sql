-- Stock-aware admission (docs/admission.md "Admission and the stock"): a room lets in at most
-- stock_factor x the event's free tickets (not held, not sold) of shoppers still choosing: admitted
-- fans who have not held yet, each for at most stock_reserve_s after admission (a fan who leaves
-- without holding stops counting then). 1.0: one choosing shopper per free ticket; an organizer
-- whose fans often leave without buying may raise it.
ALTER TABLE rooms
    ADD COLUMN stock_factor double precision NOT NULL DEFAULT 1.0 CHECK (stock_factor >= 0.1 AND stock_factor <= 100),
    ADD COLUMN stock_reserve_s integer NOT NULL DEFAULT 60 CHECK (stock_reserve_s BETWEEN 5 AND 3600);
