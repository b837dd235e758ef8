-- Event search (ticketing/event_store.py search_sql): an index for every filter and sort order,
-- proven by EXPLAIN on 100,000 events in tests/ticketing/test_search_plan.py. 0003 already has
-- events_listing (starts_at, id: the default order, date ranges and the keyset cursor),
-- events_search (GIN: the text query) and events_city (lower(city), starts_at).
--
-- events_by_category: the category filter (lower(category) = lower($n)) had no index; ordered by
-- starts_at, id so a category page is a range scan in the listing order.
CREATE INDEX events_by_category ON events (lower(category), starts_at, id)
    WHERE status IN ('on_sale', 'sold_out');
-- events_by_price: sort=price|-price (ORDER BY min_price, id) was a sequential scan and a sort of
-- every listed event; this serves that order, its keyset cursor and max_price (min_price <= $n).
CREATE INDEX events_by_price ON events (min_price, id) WHERE status IN ('on_sale', 'sold_out');
-- The text query: with the default statistics the planner estimates a word it has no statistics
-- for (a rare or absent one) at ~0.5% of the rows and walks events_listing in date order
-- filtering every row (~80 ms on 100,000 events for a word that matches nothing); a larger
-- most-common-lexeme list makes such words estimate as rare, so the GIN index is used. Costs a
-- larger ANALYZE sample of events (0.6 s on 100,000 rows).
ALTER TABLE events ALTER COLUMN search SET STATISTICS 3000;
