//! Input walking for classify: files, directories and mbox files to messages; one output record per message.
