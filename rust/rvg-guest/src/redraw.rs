//! `--redraw`: the engine kept busy drawing for as long as the host asks,
//! so that something can happen to the VM meanwhile (a live migration),
//! with every picture checked.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::picture::Picture;
use crate::{Demo, SLOT_BATCH_DONE, SLOT_PICTURE_DONE};

impl Demo<'_> {
    /// Clear the picture's panel and draw the picture again, checking
    /// every pixel each time, until `how_long` has passed.
    pub(crate) fn redraw(&mut self, picture: &Picture, how_long: Duration) -> Result<()> {
        let picture_cmds = self.picture_stream(picture)?;
        say!(
            "redraw: clearing and drawing the picture again for {:.1} s",
            how_long.as_secs_f64()
        );
        let start = Instant::now();
        let mut times = 0u32;
        while start.elapsed() < how_long {
            self.poison_slots([SLOT_BATCH_DONE, SLOT_PICTURE_DONE]);
            let mut cmds = vec![self.fill(picture.panel, 0)];
            cmds.extend(picture_cmds.iter().copied());
            self.run_and_wait("redraw", cmds)?;
            self.check_picture(picture)?;
            times += 1;
        }
        say!(
            "redraw: drew the picture {times} times in {:.1} s, every one checked",
            start.elapsed().as_secs_f64()
        );
        Ok(())
    }
}
