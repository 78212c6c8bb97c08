-- Well profiles of every feature source: the features of one well as one FLOAT[] vector.
-- Grain: (feature_source, plate, well). Position i of `features` is named in feature_sets.
-- Sources: external_profiles (already one row per well and feature) and handcrafted
-- cell_features (mean over the well's cells of every Nuclei_ / Cells_ / Cytoplasm_ column).
with
external as (select * from external_profiles),
cells as (select * from cell_features),
fields as (select * from images),
annotations as (select * from moa),
external_wells as (
    select
        feature_source, plate, well, batch, compound, concentration,
        null::bigint as n_cells,
        list(value::float order by feature_index) as features
    from external
    group by feature_source, plate, well, batch, compound, concentration
),
cell_means as (
    -- means in cell_id order: a parallel avg() adds in thread order, so two builds of one
    -- source could differ in the last bit
    select
        plate, well, count(*) as n_cells,
        list_avg(list(columns('^(Nuclei|Cells|Cytoplasm)_') order by cell_id))
    from cells
    group by plate, well
),
cell_vectors as (
    select plate, well, n_cells, [*columns('^(Nuclei|Cells|Cytoplasm)_')]::float[] as features
    from cell_means
),
well_treatments as (
    select
        plate, well,
        any_value(batch) as batch,
        any_value(compound) as compound,
        any_value(concentration) as concentration
    from fields
    group by plate, well
),
handcrafted_wells as (
    select
        'handcrafted' as feature_source, v.plate, v.well, t.batch, t.compound,
        t.concentration, v.n_cells, v.features
    from cell_vectors as v
    join well_treatments as t using (plate, well)
),
all_wells as (
    select * from external_wells
    union all
    select * from handcrafted_wells
),
annotated as (
    select
        w.feature_source, w.plate, w.well, w.batch, w.compound, w.concentration,
        a.moa, w.n_cells, w.features
    from all_wells as w
    left join annotations as a using (compound, concentration)
)
select * from annotated
order by feature_source, plate, well
